/* The login form: POST /api/v1/session, then go where the user was headed. */
(function () {
  "use strict";
  var form = document.getElementById("login-form");
  var error = document.getElementById("login-error");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    error.hidden = true;
    var button = form.querySelector("button");
    button.disabled = true;
    BF.api("POST", "/api/v1/session", {
      name: form.elements.name.value,
      password: form.elements.password.value,
    }).then(
      function () {
        var next = document.body.dataset.next || "/";
        location.assign(next.charAt(0) === "/" && next.charAt(1) !== "/" ? next : "/");
      },
      function (err) {
        error.textContent = err.message;
        error.hidden = false;
        button.disabled = false;
        form.elements.password.select();
      }
    );
  });
})();
