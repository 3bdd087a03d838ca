"""`classroom web`: the seat page, the student's sheet with a terminal in the browser, and the
trainer's dashboard, served by Tornado on the trainer's machine (docs/design.md, "classroom web").

    access.py    who is asking: sessions, the admin token, the class code, rate limits, CSRF
    seats.py     self-service seats: which student claimed which seat, under what name
    service.py   what the pages and the API ask of the classroom (the core's commands), off the event loop
    api.py       the JSON API under /api and the pages
    terminal.py  the terminal WebSocket: a shell on the student's own host, over pinned SSH
    server.py    the application, TLS, listening, stopping
"""
