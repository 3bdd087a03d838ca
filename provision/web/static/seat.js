"use strict";
(async () => {
  try {
    const info = await classroom.call("GET", "/api/web");
    document.getElementById("classroom").textContent = info.classroom;
    document.getElementById("claim").hidden = !info.self_service;
  } catch (e) { classroom.say(e.message); }
})();
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await classroom.call("POST", "/api/login", {
      student: document.getElementById("student").value.trim(),
      password: document.getElementById("password").value.trim() });
    window.location = "/me";
  } catch (e) { classroom.say(e.message); }
});
document.getElementById("claim").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await classroom.call("POST", "/api/claim", {
      code: document.getElementById("code").value.trim(),
      name: document.getElementById("name").value,
      seat: document.getElementById("seat").value.trim() || null });
    window.location = "/me";
  } catch (e) { classroom.say(e.message); }
});
