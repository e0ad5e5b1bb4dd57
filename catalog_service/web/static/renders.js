// Gallery: regenerate, approve / reject / push now through /api/v1, and live status while work runs.
(function () {
  "use strict";

  var token = document.querySelector("meta[name=csrf-token]").content;
  var list = document.querySelector("[data-render-list]");
  if (!list) return;
  var shopId = list.getAttribute("data-shop-id");
  var cardUrl = list.getAttribute("data-card-url"); // .../renders/0/card
  var POLL_MS = 1500;
  var polling = {};

  function api(method, path, body) {
    var options = {method: method, credentials: "same-origin",
                   headers: {"X-CSRF-Token": token, "Accept": "application/json"}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = data && data.error || {};
          var fields = error.fields ? " " + Object.keys(error.fields).map(function (k) {
            return k + ": " + [].concat(error.fields[k]).join(" ");
          }).join("; ") : "";
          throw new Error((error.message || ("The service answered " + response.status + ".")) + fields);
        }
        return data;
      });
    });
  }

  function say(where, message, isError) {
    var box = where && where.querySelector("[data-card-message]");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("error", !!isError);
  }

  function replaceCard(renderId) {
    // The card is drawn by the server from the database: one template for first paint and updates.
    return fetch(cardUrl.replace("/0/card", "/" + renderId + "/card"), {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) throw new Error("The render could not be loaded (" + response.status + ").");
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html.trim();
        var fresh = holder.firstElementChild;
        var old = document.getElementById("render-" + renderId);
        if (old) {
          var hadFocus = old.contains(document.activeElement);
          old.replaceWith(fresh);
          if (hadFocus) {
            // Keep keyboard users where they were: the swapped card's heading takes the focus.
            var heading = fresh.querySelector("h2");
            heading.setAttribute("tabindex", "-1");
            heading.focus();
          }
        } else {
          var empty = list.querySelector("[data-empty]");
          if (empty) empty.remove();
          list.insertBefore(fresh, list.firstElementChild);
        }
        watch(fresh);
        return fresh;
      });
  }

  function watch(card) {
    var id = card.getAttribute("data-render-id");
    var status = card.getAttribute("data-status");
    if (status !== "queued" && status !== "running") return;
    if (polling[id]) return;
    polling[id] = true;
    var failures = 0;
    (function poll() {
      setTimeout(function () {
        api("GET", "/api/v1/renders/" + id).then(function (render) {
          failures = 0;
          var current = document.getElementById("render-" + id);
          var finished = ["queued", "running"].indexOf(render.status) < 0;
          if (!current) { polling[id] = false; return; }
          if (render.status !== current.getAttribute("data-status") || finished) {
            polling[id] = false;
            return replaceCard(id);
          }
          poll();
        }).catch(function (error) {
          failures += 1;
          if (failures >= 10) { polling[id] = false; say(card, error.message + " Reload the page to see the latest.", true); }
          else poll();
        });
      }, POLL_MS);
    })();
  }

  list.querySelectorAll("[data-render-id]").forEach(watch);

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-regenerate-form]");
    if (!form) return;
    event.preventDefault();
    var productId = form.getAttribute("data-product-id") || (form.elements.product_id && form.elements.product_id.value);
    var body = {cutout: !!(form.elements.cutout && form.elements.cutout.checked)};
    var prompt = form.elements.prompt && form.elements.prompt.value.trim();
    if (prompt) body.prompt = prompt;
    var scenes = form.querySelectorAll("input[name=scenes]");
    if (scenes.length) {
      body.scenes = Array.prototype.filter.call(scenes, function (box) { return box.checked; })
        .map(function (box) { return box.value; });
    }
    var refs = Array.prototype.filter.call(form.querySelectorAll("input[name=reference_image_ids]"),
      function (box) { return box.checked; }).map(function (box) { return parseInt(box.value, 10); });
    if (refs.length) body.reference_image_ids = refs;
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    var where = form.closest(".card");
    say(where, "Asking for new images…");
    api("POST", "/api/v1/shops/" + shopId + "/products/" + encodeURIComponent(productId) + "/regenerate", body)
      .then(function (answer) {
        say(where, "Queued: render #" + answer.render_id + ".");
        return replaceCard(answer.render_id);
      })
      .catch(function (error) { say(where, error.message, true); })
      .then(function () { button.disabled = false; });
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-asset-action], button[data-push]");
    if (!button) return;
    var card = button.closest("[data-render-id]");
    var renderId = card.getAttribute("data-render-id");
    var path = button.hasAttribute("data-push")
      ? "/api/v1/renders/" + renderId + "/push"
      : "/api/v1/assets/" + button.getAttribute("data-asset-id") + "/" + button.getAttribute("data-asset-action");
    button.disabled = true;
    say(card, "Working…");
    api("POST", path, {})
      .then(function () { return replaceCard(renderId); })
      .then(function (fresh) {
        say(fresh, button.hasAttribute("data-push") ? "Sending to your shop." : "Done.");
        // A push runs in the background: follow the card until its assets settle.
        setTimeout(function () { replaceCard(renderId); }, 3000);
      })
      .catch(function (error) { button.disabled = false; say(card, error.message, true); });
  });
})();
