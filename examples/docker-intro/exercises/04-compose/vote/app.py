"""Vote: two options, one vote per browser; votes are pushed to the `votes` list in redis."""

import json
import os
import random
import socket

from flask import Flask, g, make_response, render_template, request
from redis import Redis

OPTION_A = os.getenv("OPTION_A", "Chats")
OPTION_B = os.getenv("OPTION_B", "Chiens")
HOSTNAME = socket.gethostname()

app = Flask(__name__)


def get_redis():
    if not hasattr(g, "redis"):
        g.redis = Redis(host="redis", db=0, socket_timeout=5)
    return g.redis


@app.route("/", methods=["POST", "GET"])
def hello():
    voter_id = request.cookies.get("voter_id") or hex(random.getrandbits(64))[2:]
    vote = None
    if request.method == "POST":
        vote = request.form["vote"]
        get_redis().rpush("votes", json.dumps({"voter_id": voter_id, "vote": vote}))
    counts = {option: 0 for option in ("a", "b")}
    for item in get_redis().lrange("votes", 0, -1):
        choice = json.loads(item)["vote"]
        counts[choice] = counts.get(choice, 0) + 1
    resp = make_response(render_template("index.html", option_a=OPTION_A, option_b=OPTION_B,
                                         hostname=HOSTNAME, vote=vote, counts=counts))
    resp.set_cookie("voter_id", voter_id)
    return resp


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=80, debug=True, threaded=True)
