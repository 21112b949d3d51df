/* grader review: keyboard shortcuts and the rubric lines' score. Plain JavaScript, nothing
 * external, no inline code (the page's Content-Security-Policy allows scripts from here only).
 *
 * Keys (none while typing in a text field, except Ctrl+Enter / Ctrl+S):
 *   j or ArrowRight  next submission (a[rel=next]); in the class list, the next row
 *   k or ArrowLeft   previous submission (a[rel=prev]); in the class list, the previous row
 *   n                next submission still to grade (#next-open, grading by question)
 *   s                the score field of the first grading form
 *   1 .. 9           tick or untick that rubric line of the form in use (the one holding
 *                    the focus, else the one changed, else the first)
 *   Ctrl+Enter, Ctrl+S  save the form being edited (or the first one)
 *   ?                the list of shortcuts
 * Leaving a page whose form was changed but not saved takes a second j / k / n.
 *
 * Ticking a rubric line sets the score to the ticked lines' sum kept within 0..points, the
 * rule the server applies (rubric.ManualItem.score_of); typing a score afterwards keeps the
 * typed one. The server checks everything again.
 */
(function () {
  "use strict";

  var dirty = null;       // the grading form changed since the page loaded, if any
  var armed = null;       // the navigation key pressed once over unsaved changes

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    if (el.tagName !== "INPUT") return false;
    return !/^(checkbox|radio|button|submit|reset)$/i.test(el.type || "");
  }

  function rubricScore(form) {
    var score = form.querySelector("input.score");
    if (!score) return;
    var max = parseFloat(score.getAttribute("data-max"));
    var total = 0;
    form.querySelectorAll("input.line:checked").forEach(function (box) {
      total += parseFloat(box.getAttribute("data-points")) || 0;
    });
    total = Math.min(Math.max(total, 0), isNaN(max) ? total : max);
    score.value = String(Math.round(total * 10000) / 10000);
  }

  function hint(text) {
    var el = document.getElementById("key-hint");
    if (!el) return;
    el.textContent = text;
    el.hidden = !text;
  }

  function go(selector, key) {
    var link = document.querySelector(selector);
    if (!link) return false;
    if (dirty && armed !== key) {
      armed = key;
      hint("Unsaved changes: Ctrl+Enter saves them; press " + key + " again to leave without saving.");
      return true;
    }
    window.location.href = link.href;
    return true;
  }

  function moveRow(step) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("a.row-link"));
    if (!rows.length) return false;
    var at = rows.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(Math.max(at + step, 0), rows.length - 1);
    rows[next].focus();
    return true;
  }

  function save(form) {
    dirty = null;
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }

  function tickLine(number) {
    var active = document.activeElement;
    var form = (active && active.closest && active.closest("form.grade")) || dirty ||
      document.querySelector("form.grade");
    if (!form) return false;
    var box = form.querySelectorAll("input.line")[number - 1];
    if (!box) return false;
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));  // the score, and unsaved
    return true;
  }

  function toggleHelp() {
    var dialog = document.getElementById("shortcuts");
    if (!dialog) return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.grade").forEach(function (form) {
      form.addEventListener("change", function (e) {
        if (e.target.classList.contains("line")) rubricScore(form);
        dirty = form;
      });
      form.addEventListener("input", function () { dirty = form; });
      form.addEventListener("submit", function () { dirty = null; });
    });
    var show = document.getElementById("show-help");
    if (show) show.addEventListener("click", toggleHelp);
    var close = document.getElementById("close-help");
    if (close) close.addEventListener("click", toggleHelp);
  });

  document.addEventListener("keydown", function (e) {
    var dialog = document.getElementById("shortcuts");
    if ((e.ctrlKey || e.metaKey) && (e.key === "Enter" || e.key === "s" || e.key === "S")) {
      // the form being edited: the one holding the focus, else the one changed; outside
      // every form and with nothing changed, a save key saves nothing (no reflex 0)
      var active = document.activeElement;
      var form = (active && active.closest && active.closest("form.grade")) || dirty;
      e.preventDefault();
      if (form) save(form);
      else if (document.querySelector("form.grade")) hint("Nothing to save: press s to enter a score first.");
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
    if (dialog && dialog.open && e.key !== "?") return;
    var done = false;
    switch (e.key) {
      case "j": case "ArrowRight":
        done = go("a[rel=next]", "j") || (e.key === "j" && moveRow(1)); break;
      case "k": case "ArrowLeft":
        done = go("a[rel=prev]", "k") || (e.key === "k" && moveRow(-1)); break;
      case "n":
        done = go("#next-open", "n"); break;
      case "s":
        var score = document.querySelector("form.grade input.score");
        if (score) { score.focus(); score.select(); done = true; }
        break;
      case "?":
        toggleHelp(); done = true; break;
      default:
        if (/^[1-9]$/.test(e.key)) done = tickLine(parseInt(e.key, 10));
    }
    if (done) e.preventDefault();
  });
})();
