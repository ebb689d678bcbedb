// payledger payment page: live status, countdown and the redirect back to
// the shop. The page works without this script; this only keeps it current.
(function () {
  "use strict";
  var root = document.getElementById("pay");
  if (!root) return;
  var statusURL = root.dataset.statusUrl;
  // The page's own URL: a page answered to a refused form lives at the
  // form's URL, and reloading it would send the form again.
  var pageURL = root.dataset.pageUrl;
  var phase = root.dataset.phase;
  var paymentId = root.dataset.paymentId || "";
  var isFinal = root.dataset.final === "true";
  var expiresAt = Date.parse(root.dataset.expiresAt);
  // The server's clock decides expiry; the offset corrects the device's.
  var offset = Date.parse(root.dataset.now) - Date.now();
  var delay = parseInt(root.dataset.redirectDelay, 10) || 3000;
  var statusEl = document.getElementById("status");
  var countdown = document.getElementById("countdown");
  var ticker = null, pollTimer = null, inflight = false, leaving = false;
  // Status polls that failed in a row (a 503, the network): after
  // failuresToSay the page says so, and it waits longer between polls.
  var failures = 0, failuresToSay = 3;

  // A copy says so on the button, and in a live region for screen
  // readers, which read the button by its aria-label ("Copy the amount"),
  // not by its text. The region is emptied afterwards, so that copying
  // the same value again is announced again.
  var copyStatus = document.getElementById("copy-status");
  if (navigator.clipboard) {
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      var label = b.textContent;
      b.hidden = false;
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(b.dataset.copy).then(function () {
          b.textContent = "Copied";
          if (copyStatus) copyStatus.textContent = b.dataset.copied;
          setTimeout(function () {
            b.textContent = label;
            if (copyStatus && copyStatus.textContent === b.dataset.copied) copyStatus.textContent = "";
          }, 1500);
        });
      });
    });
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function format(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    return (h > 0 ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
  }
  function hide(selector) {
    document.querySelectorAll(selector).forEach(function (el) { el.hidden = true; });
  }

  function tick() {
    var left = expiresAt - (Date.now() + offset);
    countdown.textContent = format(left);
    if (left <= 0) {
      clearInterval(ticker);
      ticker = null;
      // Nothing left to count, no other method to choose: the status says
      // what happens now (a live payment's page stays up). Without a live
      // payment no method can be chosen any more, whether or not the
      // server can be reached to say so.
      hide(".js-before-expiry");
      if (phase === "choose" || phase === "failed") {
        var form = document.getElementById("method-form");
        if (form) form.querySelectorAll("input, button").forEach(function (el) { el.disabled = true; });
      }
      poll();
    }
  }

  // The redirect back to the shop, said in the status and stoppable with
  // "Stay on this page" (WCAG 2.2.1): the customer may want to read the
  // page or note the reference first.
  var leaveTimer = null;
  var stayButton = document.getElementById("stay");
  function goSoon(url) {
    var note = document.getElementById("redirect-note");
    if (!note) {
      note = document.createElement("span");
      note.id = "redirect-note";
      note.textContent = " " + root.dataset.redirectNote;
      statusEl.appendChild(note);
    }
    note.hidden = false;
    stayButton.hidden = false;
    // Focus on the button: a keyboard or screen reader user meets the
    // choice at once, not after tabbing to it while the time runs.
    stayButton.focus();
    leaveTimer = setTimeout(function () { window.location.assign(url); }, delay);
  }
  stayButton.addEventListener("click", function () {
    clearTimeout(leaveTimer);
    leaveTimer = null;
    var note = document.getElementById("redirect-note");
    if (note) note.remove();
    stayButton.hidden = true;
    document.getElementById("return-link").focus();
  });

  function finish(s) {
    isFinal = true;
    stopPolling();
    clearInterval(ticker);
    root.dataset.phase = s.phase;
    root.dataset.final = "true";
    document.querySelectorAll(".js-live").forEach(function (el) { el.hidden = true; });
    statusEl.className = "status status-" + s.phase;
    statusEl.textContent = s.message;
    var link = document.getElementById("return-link");
    var note = document.getElementById("close-note");
    document.getElementById("final-actions").hidden = false;
    if (s.redirect_url) {
      link.href = s.redirect_url;
      link.hidden = false;
      note.hidden = true;
      goSoon(s.redirect_url);
    } else {
      link.hidden = true;
      note.hidden = false;
    }
  }

  // Opens the page afresh at its own URL, in place of this one in the
  // history: never reload(), which would send a refused form again.
  function reopen() {
    leaving = true;
    stopPolling();
    clearInterval(ticker);
    window.location.replace(pageURL);
  }

  // Phases that are not final keep the page polling: "exhausted" (no more
  // payments may be made) too, until the invoice expires or is cancelled,
  // which are final. Another payment, or a phase that changed otherwise
  // than by "I have paid" on this page, opens the page afresh.
  function apply(s) {
    if (leaving) return;
    if (s.final) {
      finish(s);
      return;
    }
    var pid = s.payment_id || "";
    if (pid !== paymentId) {
      // Another payment (another tab, the merchant): the details and
      // forms shown are a dead payment's.
      reopen();
      return;
    }
    if (s.phase !== phase) {
      if (!(phase === "pay" && s.phase === "confirmed")) {
        // Changed elsewhere (another tab): this page's forms are stale.
        reopen();
        return;
      }
      phase = s.phase;
      root.dataset.phase = phase;
      // Said paid: no form left, and no time to count down to.
      clearInterval(ticker);
      ticker = null;
      hide(".js-pay-only");
      hide("#countdown-line");
      statusEl.className = "status status-" + phase;
    }
    if (statusEl.textContent !== s.message) statusEl.textContent = s.message;
    expiresAt = Date.parse(s.expires_at);
    offset = Date.parse(s.now) - Date.now();
  }

  function stopPolling() {
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  // The next poll: every 2 s, and after failuresToSay failures in a row
  // twice as long after each further one, up to 30 s. Past expires_at a
  // live payment may still be decided (late), but nothing hurries it, and
  // a page left open must not ask every 2 s for ever: every 10 s for the
  // first ten minutes past the time, then every minute, and a day past it
  // the page stops and asks for a reload.
  var lateSlow = 10 * 60 * 1000, lateStop = 24 * 3600 * 1000;
  function schedule() {
    stopPolling();
    if (isFinal || leaving) return;
    var wait = 2000;
    if (failures >= failuresToSay) wait = Math.min(30000, wait * Math.pow(2, failures - failuresToSay + 1));
    var late = Date.now() + offset - expiresAt;
    if (late > lateStop) {
      statusEl.textContent = "Reload the page to check the status.";
      return;
    }
    if (late > 0) wait = Math.max(wait, late < lateSlow ? 10000 : 60000);
    pollTimer = setTimeout(poll, wait);
  }

  function poll() {
    if (inflight || isFinal || leaving) return;
    stopPolling();
    inflight = true;
    fetch(statusURL, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.json();
      })
      .then(function (s) {
        failures = 0;
        apply(s);
      })
      .catch(function () {
        // A blip is retried quietly; an outage is said, in the status
        // region, which screen readers announce.
        failures++;
        if (failures >= failuresToSay) {
          statusEl.textContent = "Can\u2019t reach the server right now. Reload the page to check the status; it keeps trying meanwhile.";
        }
      })
      .then(function () {
        inflight = false;
        schedule();
      });
  }

  if (isFinal) {
    var link = document.getElementById("return-link");
    if (link && !link.hidden && link.getAttribute("href")) goSoon(link.href);
    return;
  }
  if (countdown) {
    tick();
    ticker = setInterval(tick, 1000);
  }
  schedule();
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
})();
