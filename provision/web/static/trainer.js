"use strict";
const STATUS_EVERY = 5000, PROGRESS_EVERY = 10000;
let names = {};

function row(cells) {
  const tr = classroom.el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : classroom.el("td", cell));
  return tr;
}
function header(table, columns) {
  const thead = table.querySelector("thead");
  thead.replaceChildren(row(columns.map((c) => classroom.el("th", c))));
}
function stamp(id) { document.getElementById(id).textContent = `(${new Date().toLocaleTimeString()})`; }
function results(lines) {
  const node = document.getElementById("results");
  node.textContent = `${lines.join("\n")}\n${node.textContent}`;
}

async function act(what, path, body) {
  if (!window.confirm(what + "?")) return;
  results([`${what}: working…`]);
  try {
    const answer = await classroom.call("POST", path, body);
    results(answer.lines);
    refreshStatus(); refreshProgress();
  } catch (e) { results([`${what}: ${e.message}`]); }
}

function actions(student) {
  const td = classroom.el("td", null, "actions");
  const soft = classroom.el("button", "Reset"); soft.type = "button"; soft.dataset.student = student; soft.className = "reset";
  soft.addEventListener("click", () => act(`Reset ${student} (soft: containers, volumes, exercises)`,
    `/api/reset/${encodeURIComponent(student)}`, { hard: false }));
  const hard = classroom.el("button", "Hard reset"); hard.type = "button"; hard.dataset.student = student; hard.className = "hard-reset";
  hard.addEventListener("click", () => act(`Replace the machine of ${student} (hard reset)`,
    `/api/reset/${encodeURIComponent(student)}`, { hard: true }));
  td.append(soft, " ", hard);
  return td;
}

async function refreshProgress() {
  const table = document.getElementById("progress");
  try {
    const progress = await classroom.call("GET", "/api/progress");
    header(table, ["student", "name", ...progress.exercises, "done", "", "detail"]);
    const body = table.querySelector("tbody");
    body.replaceChildren(...progress.students.map((s) => row([
      s.student, names[s.student] || "",
      ...progress.exercises.map((e) => {
        const value = s.done[e];
        return classroom.el("td", value === true ? "✓" : value === false ? "–" : "?",
          value === true ? "done" : value === false ? "todo" : "unknown");
      }),
      `${s.count}/${progress.exercises.length}`, actions(s.student), s.detail || ""])));
    body.querySelectorAll("tr").forEach((tr, i) => { tr.dataset.student = progress.students[i].student; });
    document.getElementById("progress-note").textContent = "";
    stamp("progress-time");
  } catch (e) {
    document.getElementById("progress-note").textContent = e.message;
  }
}

async function refreshStatus() {
  const table = document.getElementById("status");
  try {
    const status = await classroom.call("GET", "/api/status");
    const checks = [...new Set(status.hosts.flatMap((h) => Object.keys(h.checks || {})))].sort();
    header(table, ["host", "role", "address", "port", "state", ...checks, "detail"]);
    table.querySelector("tbody").replaceChildren(...status.hosts.map((h) => row([
      h.name, h.role, h.address || "-", h.port || "-", classroom.el("td", h.state, h.state),
      ...checks.map((c) => (c in (h.checks || {}) ? (h.checks[c] ? "ok" : "no") : "-")), h.detail || ""])));
    stamp("status-time");
  } catch (e) { classroom.say(e.message); }
}

(async () => {
  try {
    const info = await classroom.call("GET", "/api/class");
    classroom.csrf = info.csrf;
    names = info.names || {};
    document.getElementById("classroom").textContent = info.classroom;
    document.getElementById("student-url").textContent = info.student_url;
    if (info.class_code) {
      document.getElementById("class-code").textContent = info.class_code;
      document.getElementById("code-block").hidden = false;
    }
  } catch (e) { classroom.say(e.message); return; }
  refreshStatus(); refreshProgress();
  setInterval(refreshStatus, STATUS_EVERY);
  setInterval(async () => {
    try { names = (await classroom.call("GET", "/api/class")).names || {}; } catch (e) { /* shown by the next refresh */ }
    refreshProgress();
  }, PROGRESS_EVERY);
})();
document.getElementById("extend").addEventListener("submit", (event) => {
  event.preventDefault();
  const duration = document.getElementById("duration").value.trim();
  act(`Extend the classroom by ${duration}`, "/api/extend", { duration });
});
