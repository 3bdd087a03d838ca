"""Text that came from a host is untrusted: a student is root on their own host, and whatever a
host prints can reach the trainer's terminal.

A `.bashrc` that prints `\\e]0;PWNED\\a\\e[2J[red]...[/red]` must neither retitle the trainer's
window, clear their screen, nor colour the status table. Two steps, one for each danger:
`clean` removes terminal control (escape sequences, C0 but newline and tab, DEL, C1), at the edge
where host text enters the core; `shown` also escapes Rich markup, where the CLI renders it.
"""

from __future__ import annotations

import re

from rich.markup import escape

# ESC sequences first, whole (so their parameters do not survive as text): OSC and the other
# string commands (DCS, SOS, PM, APC) up to BEL or ST; CSI with its parameters; two-byte escapes.
# Then any lone control character that is left: C0 except \t and \n, DEL, and C1 (U+0080-U+009F,
# which some terminals obey as 8-bit CSI/OSC).
_ESCAPES = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC/DCS/SOS/PM/APC to BEL/ST
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI (7- or 8-bit): parameters, intermediates, final
    r"|\x1b[ -/]*[0-~]?"  # nF / Fp / Fe / Fs escapes, and a lone ESC
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """`text` without anything a terminal would act on: printable characters, newlines, tabs."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def shown(text: object) -> str:
    """Host-derived text ready for a Rich markup string: cleaned, and its `[...]` escaped."""
    return escape(clean(str(text)))
