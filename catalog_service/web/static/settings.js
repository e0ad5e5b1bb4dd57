// Settings page: scene presets (add, reorder, remove) and reference photo upload (picker or drop, with previews).
(function () {
  "use strict";

  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  // --- presets -------------------------------------------------------------------------------------
  var list = document.querySelector("[data-preset-list]");
  var template = document.getElementById("preset-template");
  var form = document.getElementById("settings-form");
  var counter = list ? list.querySelectorAll("[data-preset]").length + 100 : 0;

  function renumber() {
    // Form names follow the order on the page: presets.0.*, presets.1.*, ...
    list.querySelectorAll("[data-preset]").forEach(function (fieldset, index) {
      fieldset.querySelectorAll("[name]").forEach(function (input) {
        input.name = input.name.replace(/^presets\.[^.]+\./, "presets." + index + ".");
      });
      var number = fieldset.querySelector("[data-preset-number]");
      if (number) number.textContent = String(index + 1);
    });
  }

  if (list && template && form) {
    document.querySelector("[data-add-preset]").addEventListener("click", function () {
      counter += 1;
      var html = template.innerHTML.replace(/__i__/g, String(counter));
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var fieldset = holder.firstElementChild;
      list.appendChild(fieldset);
      renumber();
      var first = fieldset.querySelector("input, select, textarea");
      if (first) first.focus();
    });
    list.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) return;
      var fieldset = button.closest("[data-preset]");
      if (button.hasAttribute("data-remove")) {
        var next = fieldset.nextElementSibling || fieldset.previousElementSibling;
        fieldset.remove();
        renumber();
        var target = next ? next.querySelector("button[data-remove]") : document.querySelector("[data-add-preset]");
        if (target) target.focus();
      } else if (button.hasAttribute("data-move")) {
        if (button.getAttribute("data-move") === "-1" && fieldset.previousElementSibling) {
          list.insertBefore(fieldset, fieldset.previousElementSibling);
        } else if (button.getAttribute("data-move") === "1" && fieldset.nextElementSibling) {
          list.insertBefore(fieldset.nextElementSibling, fieldset);
        }
        renumber();
        button.focus();
      }
    });
    form.addEventListener("submit", renumber);
  }

  // --- reference photo upload ----------------------------------------------------------------------
  var zone = document.querySelector("[data-dropzone]");
  if (!zone) return;
  var input = zone.querySelector("input[type=file]");
  var previews = zone.querySelector("[data-previews]");
  var error = document.querySelector("[data-upload-error]");
  var maxBytes = parseInt(zone.getAttribute("data-max-bytes"), 10) || 0;
  var uploadForm = document.getElementById("upload-form");

  function show(message) {
    error.textContent = message;
    error.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }

  function preview() {
    previews.innerHTML = "";
    var problems = [];
    Array.prototype.forEach.call(input.files, function (file) {
      if (file.type && file.type.indexOf("image/") !== 0) problems.push(file.name + ": not an image.");
      else if (maxBytes && file.size > maxBytes) problems.push(file.name + ": larger than " + Math.round(maxBytes / 1048576) + " MB.");
      var figure = document.createElement("figure");
      var img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = "Preview of " + file.name;
      img.onload = function () { URL.revokeObjectURL(img.src); };
      var caption = document.createElement("figcaption");
      caption.textContent = file.name;
      figure.appendChild(img);
      figure.appendChild(caption);
      previews.appendChild(figure);
    });
    show(problems.join(" "));
  }

  input.addEventListener("change", preview);
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    preview();
  });
  uploadForm.addEventListener("submit", function (event) {
    if (!input.files.length) { event.preventDefault(); show("Choose a photo (or drop one on the box) first."); }
    else if (error.textContent && !error.hidden) { event.preventDefault(); input.focus(); }
  });
})();
