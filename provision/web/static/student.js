"use strict";
function fill(id, text) { document.getElementById(id).textContent = text || ""; }

function showSheet(me) {
  fill("host", me.host);
  fill("who", me.name ? `${me.name} (${me.student})` : me.student);
  fill("ssh", me.ssh);
  fill("password", me.password);
  fill("host-key", me.host_key);
  const ports = document.getElementById("ports");
  for (const item of me.ports || []) {
    const li = classroom.el("li");
    const url = typeof item === "object" ? (item.url || "") : String(item);
    if (typeof item === "object" && item.port) li.append(`${item.port} → `);
    if (/^https?:\/\//.test(url)) {
      const a = classroom.el("a", url); a.href = url; a.target = "_blank"; a.rel = "noopener noreferrer"; li.append(a);
    } else { li.append(url); }
    ports.append(li);
  }
  document.getElementById("ports-block").hidden = !(me.ports || []).length;
  const swarm = document.getElementById("swarm");
  for (const node of me.swarm || []) {
    const port = node.port && node.port !== 22 ? `-p ${node.port} ` : "";
    swarm.append(classroom.el("li", `${node.name} (${node.role}): ssh ${port}${me.user}@${node.address}`));
  }
  fill("swarm-password", me.swarm_password);
  document.getElementById("swarm-block").hidden = !(me.swarm || []).length && !me.swarm_password;
}

function openTerminal() {
  const term = new Terminal({ cursorBlink: true, fontSize: 15, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}/api/terminal?cols=${term.cols}&rows=${term.rows}`);
  socket.binaryType = "arraybuffer";
  const state = document.getElementById("terminal-state");
  state.textContent = "connecting…";
  socket.onopen = () => { state.textContent = "connected"; term.focus(); };
  socket.onmessage = (event) => { state.textContent = "connected"; term.write(new Uint8Array(event.data)); };
  socket.onclose = (event) => { state.textContent = `closed${event.reason ? ": " + event.reason : ""}`; };
  term.onData((data) => { if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ data })); });
  window.addEventListener("resize", () => {
    fit.fit();
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ resize: [term.cols, term.rows] }));
  });
  // The screen as text, line by line: what the browser tests read (xterm 4.x calls it buffer or buffer.active).
  window.classroomScreen = () => {
    const buffer = term.buffer.active || term.buffer;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines;
  };
}

(async () => {
  try {
    const me = await classroom.call("GET", "/api/me");
    classroom.csrf = me.csrf;
    showSheet(me);
    openTerminal();
  } catch (e) {
    if (e.status === 401) { window.location = "/"; return; }
    classroom.say(e.message);
  }
})();
document.getElementById("logout").addEventListener("click", async () => {
  try { await classroom.call("POST", "/api/logout", {}); } finally { window.location = "/"; }
});
