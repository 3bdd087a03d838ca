// Shared by the pages. Data is only ever put in the page as text (textContent), never as HTML.
"use strict";
const classroom = {
  csrf: "",
  async call(method, path, body) {
    const options = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = classroom.csrf;
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = {};
    try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
    if (!response.ok) { const error = new Error(data.error || response.statusText); error.status = response.status; throw error; }
    return data;
  },
  el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  },
  say(text, ok) {
    const node = document.getElementById("message");
    node.textContent = text || "";
    node.className = ok ? "message ok" : "message";
  },
};
