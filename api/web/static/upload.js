/* Kho upload progress: the only script of the pages (progressive enhancement).
 *
 * A form with data-upload-url still works without this file (multipart POST). With it, the
 * chosen file is sent as the raw body of a PUT to data-upload-url, the other fields in one
 * urlencoded X-Upload-Fields header and the CSRF token in X-CSRF-Token, so that the progress
 * bar can follow the upload (XMLHttpRequest upload events; fetch has none).
 */
(function () {
  "use strict";

  function text(form, key) {
    return form.getAttribute("data-msg-" + key) || "";
  }

  function clearErrors(form) {
    var nodes = form.querySelectorAll(".js-field-error");
    for (var i = 0; i < nodes.length; i++) {
      var input = form.querySelector("#" + nodes[i].getAttribute("data-for"));
      if (input) {
        input.removeAttribute("aria-invalid");
        var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
          return id && id !== nodes[i].id;
        });
        if (ids.length) { input.setAttribute("aria-describedby", ids.join(" ")); }
        else { input.removeAttribute("aria-describedby"); }
      }
      nodes[i].parentNode.removeChild(nodes[i]);
    }
  }

  function showFieldError(form, name, message) {
    var input = form.querySelector("[name='" + name + "']");
    if (!input || !input.id) { return false; }
    var existing = document.getElementById(input.id + "-error");
    if (existing) { existing.parentNode.removeChild(existing); }
    var p = document.createElement("p");
    p.className = "field-error js-field-error";
    p.id = input.id + "-error";
    p.setAttribute("data-for", input.id);
    p.textContent = message;
    input.parentNode.insertBefore(p, input);
    input.setAttribute("aria-invalid", "true");
    var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (ids.indexOf(p.id) < 0) { ids.push(p.id); }
    input.setAttribute("aria-describedby", ids.join(" "));
    return true;
  }

  function enhance(form) {
    var url = form.getAttribute("data-upload-url");
    var prefix = form.getAttribute("data-upload-id");
    var fileInput = form.querySelector("input[type='file']");
    if (!url || !prefix || !fileInput || !window.XMLHttpRequest || !window.FormData) { return; }
    var box = document.getElementById(prefix + "-progress-box");
    var bar = document.getElementById(prefix + "-progress");
    var label = document.getElementById(prefix + "-progress-text");
    var status = document.getElementById(prefix + "-status");
    var submit = form.querySelector("button[type='submit']");

    form.addEventListener("submit", function (event) {
      if (!fileInput.files || fileInput.files.length !== 1) { return; } // server explains
      event.preventDefault();
      clearErrors(form);
      status.textContent = "";
      status.classList.remove("error");
      var file = fileInput.files[0];
      var params = new URLSearchParams();
      var csrf = "";
      var data = new FormData(form);
      data.forEach(function (value, key) {
        if (typeof value !== "string") { return; }
        if (key === "csrf") { csrf = value; return; }
        params.append(key, value);
      });
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("X-Upload-Fields", params.toString());
      xhr.setRequestHeader("Content-Disposition", "attachment; filename*=UTF-8''" + encodeURIComponent(file.name));
      xhr.setRequestHeader("X-Requested-With", "kho-upload");
      box.hidden = false;
      bar.value = 0;
      label.textContent = "0%";
      if (submit) { submit.disabled = true; }
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) { return; }
        var pct = Math.floor((e.loaded / e.total) * 100);
        bar.value = pct;
        bar.textContent = pct + "%";
        label.textContent = pct + "%";
      });
      xhr.addEventListener("load", function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (ignore) { body = null; }
        if (xhr.status >= 200 && xhr.status < 300 && body && body.redirect) {
          bar.value = 100;
          label.textContent = "100%";
          status.textContent = text(form, "done");
          window.location.assign(body.redirect);
          return;
        }
        if (submit) { submit.disabled = false; }
        box.hidden = true;
        status.classList.add("error");
        var shown = false;
        if (body && body.fields) {
          Object.keys(body.fields).forEach(function (name) {
            shown = showFieldError(form, name, body.fields[name]) || shown;
          });
        }
        var message = body ? (body.title + (body.detail ? ". " + body.detail : "")) : text(form, "failed");
        status.textContent = message + (body && body.code ? " (" + body.code + ")" : "");
        if (shown) {
          var first = form.querySelector("[aria-invalid='true']");
          if (first) { first.focus(); }
        }
      });
      xhr.addEventListener("error", function () {
        if (submit) { submit.disabled = false; }
        box.hidden = true;
        status.classList.add("error");
        status.textContent = text(form, "failed");
      });
      xhr.send(file);
    });
  }

  var forms = document.querySelectorAll("form[data-upload-url]");
  for (var i = 0; i < forms.length; i++) { enhance(forms[i]); }
}());
