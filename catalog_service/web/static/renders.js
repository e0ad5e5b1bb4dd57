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
        sweep(fresh);
        return fresh;
      });
  }

  function busy(card) {
    // Still making images, or still sending them: either may change what the card says.
    return ["queued", "running"].indexOf(card.getAttribute("data-status")) >= 0 ||
      ["pending", "retrying"].indexOf(card.getAttribute("data-push-status")) >= 0;
  }

  function watch(card) {
    var id = card.getAttribute("data-render-id");
    if (!busy(card)) return;
    if (polling[id]) return;
    polling[id] = true;
    var failures = 0;
    (function poll() {
      setTimeout(function () {
        api("GET", "/api/v1/renders/" + id).then(function (render) {
          failures = 0;
          var current = document.getElementById("render-" + id);
          if (!current) { polling[id] = false; return; }
          var changed = render.status !== current.getAttribute("data-status") ||
            render.push.status !== current.getAttribute("data-push-status") ||
            String(render.push.attempts) !== current.getAttribute("data-push-attempts");
          if (changed) {
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

  // A photo that can no longer be loaded becomes a placeholder that says why, not a broken-image icon.
  function missing(img) {
    var box = document.createElement("div");
    box.className = "thumb-missing";
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", img.getAttribute("alt") + ": " + img.getAttribute("data-missing"));
    box.textContent = img.getAttribute("data-missing");
    var link = img.closest("a");
    (link || img).replaceWith(box);
  }
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (img.tagName === "IMG" && img.hasAttribute("data-missing")) missing(img);
  }, true);
  function sweep(root) {
    // Images that failed before the page's script ran (it is deferred), or while a fresh card was not yet
    // in the page, fired their error where the listener above could not hear it.
    root.querySelectorAll("img[data-missing]").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) missing(img);
    });
  }
  sweep(list);

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
    var body = {};
    var held = parseInt(button.getAttribute("data-held") || "0", 10);
    if (held > 0) {
      // Review mode: held images were never approved, so pushing them is the merchant's explicit choice.
      var failed = card.querySelectorAll("[data-push-status=failed]").length;
      var approve = window.confirm(held + (held === 1 ? " image waits" : " images wait") + " for your review. " +
        "OK approves " + (held === 1 ? "it" : "them") + " and sends " + (held === 1 ? "it" : "them") + " to your shop; " +
        (failed ? "Cancel sends only the " + failed + " that could not be sent before." : "Cancel sends nothing."));
      if (!approve && !failed) { say(card, "Nothing sent: approve images one by one, or push again."); return; }
      if (approve) body.approve_held = true;
    }
    button.disabled = true;
    say(card, "Working…");
    api("POST", path, body)
      .then(function () { return replaceCard(renderId); })
      .then(function (fresh) {
        say(fresh, button.hasAttribute("data-push") ? "Sending to your shop." : "Done.");
        // A push runs in the background: follow the card until its assets settle.
        setTimeout(function () { replaceCard(renderId); }, 3000);
      })
      .catch(function (error) { button.disabled = false; say(card, error.message, true); });
  });

  // --- the existing catalog: estimate, start, pause, resume, cancel; live progress while it runs --------------
  var panel = document.querySelector("[data-backfill-panel]");
  if (panel) {
    var backfills = "/api/v1/shops/" + panel.getAttribute("data-shop-id") + "/backfills";
    panel.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-backfill-action]");
      if (!button) return;
      var action = button.getAttribute("data-backfill-action");
      if (action === "cancel" && !window.confirm("Cancel the catalog run? Products not started yet are left as they are.")) return;
      var path = action === "estimate" ? backfills : backfills + "/" + panel.getAttribute("data-backfill-id") + "/" + action;
      button.disabled = true;
      panel.querySelector("[data-backfill-message]").textContent = "Working…";
      api("POST", path, action === "estimate" ? {dry_run: true} : undefined)
        .then(function () { window.location.reload(); })
        .catch(function (error) {
          button.disabled = false;
          var box = panel.querySelector("[data-backfill-message]");
          box.textContent = error.message;
          box.classList.add("error");
        });
    });
    var status = panel.getAttribute("data-backfill-status");
    if (status === "running" || status === "collecting") {
      setTimeout(function follow() {
        api("GET", backfills + "/" + panel.getAttribute("data-backfill-id")).then(function (shown) {
          if (shown.status !== status) { window.location.reload(); return; }
          var bar = panel.querySelector("[data-backfill-bar]");
          bar.max = shown.total || 1;
          bar.value = shown.done + shown.failed + shown.skipped;
          panel.querySelector("[data-backfill-counts]").textContent = shown.done + " done · " + shown.failed +
            " failed · " + shown.skipped + " skipped · " + shown.remaining + " remaining · $" + shown.cost_usd.toFixed(2) +
            " spent of about $" + ((shown.estimate && shown.estimate.cost_usd) || 0).toFixed(2) +
            (shown.eta_s !== null ? " · about " + Math.ceil(shown.eta_s / 60) + " min left" : "");
          setTimeout(follow, 3000);
        }).catch(function () { setTimeout(follow, 10000); });
      }, 3000);
    }
  }

  // --- review many at once: tick images, then approve or reject them in one request ----------------------
  var bar = document.querySelector("[data-bulk-bar]");
  if (bar) {
    var all = bar.querySelector("[data-bulk-all]");
    var picked = function () { return Array.prototype.slice.call(list.querySelectorAll("[data-bulk-asset]:checked")); };
    var update = function () {
      var count = picked().length;
      bar.querySelector("[data-bulk-count]").textContent = count + " selected";
      bar.querySelectorAll("[data-bulk-action]").forEach(function (b) { b.disabled = count === 0; });
      var boxes = list.querySelectorAll("[data-bulk-asset]");
      all.checked = boxes.length > 0 && count === boxes.length;
    };
    list.addEventListener("change", function (event) {
      if (event.target.matches("[data-bulk-asset]")) update();
    });
    all.addEventListener("change", function () {
      list.querySelectorAll("[data-bulk-asset]").forEach(function (box) { box.checked = all.checked; });
      update();
    });
    bar.addEventListener("click", function (event) {
      var button = event.target.closest("[data-bulk-action]");
      if (!button) return;
      var boxes = picked();
      var ids = boxes.map(function (box) { return parseInt(box.value, 10); });
      var renders = {};
      boxes.forEach(function (box) { renders[box.closest("[data-render-id]").getAttribute("data-render-id")] = true; });
      var action = button.getAttribute("data-bulk-action");
      var message = bar.querySelector("[data-bulk-message]");
      message.classList.remove("error");
      message.textContent = "Working…";
      button.disabled = true;
      api("POST", "/api/v1/shops/" + shopId + "/assets/" + action, {asset_ids: ids})
        .then(function (answer) {
          var problems = answer.assets.filter(function (r) { return r.error; })
            .map(function (r) { return "#" + r.asset_id + ": " + r.error.message; });
          message.textContent = (action === "approve" ? "Approved " : "Rejected ") + answer.done + " of " +
            ids.length + (action === "approve" && answer.done ? "; sending to your shop." : ".") +
            (problems.length ? " Not done: " + problems.join(" ") : "");
          message.classList.toggle("error", problems.length > 0);
          return Promise.all(Object.keys(renders).map(function (id) { return replaceCard(id); }));
        })
        .catch(function (error) { message.textContent = error.message; message.classList.add("error"); })
        .then(update);
    });
    update();
  }

  // --- the regenerate picker searches the whole catalog, one capped page at a time ----------------------
  var search = document.querySelector("[data-product-search]");
  if (search) {
    var picker = document.getElementById("regen-product");
    var help = document.querySelector("[data-product-help]");
    var timer = null;
    var asked = 0;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var mine = ++asked;
        var q = search.value.trim();
        api("GET", "/api/v1/shops/" + shopId + "/products?limit=20&q=" + encodeURIComponent(q))
          .then(function (answer) {
            if (mine !== asked) return; // a later search answered first
            picker.innerHTML = "";
            answer.products.forEach(function (product) {
              var option = document.createElement("option");
              option.value = product.id;
              option.textContent = (product.title || "Untitled") + " (" + product.id + ")";
              picker.appendChild(option);
            });
            help.textContent = !answer.products.length ? "No product matches “" + q + "”."
              : answer.more ? "The first " + answer.products.length + " matches; type more to narrow the search."
              : answer.products.length + (answer.products.length === 1 ? " product matches." : " products match.");
          })
          .catch(function (error) { help.textContent = error.message; });
      }, 250);
    });
  }
})();
