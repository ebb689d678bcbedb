// payledger widget page: show the currency of the chosen method beside the
// amount. The form works without this script.
(function () {
  "use strict";
  var select = document.getElementById("method");
  var out = document.getElementById("amount-currency");
  if (!select || !out) return;
  function update() {
    var o = select.options[select.selectedIndex];
    out.textContent = o && o.dataset.currency ? o.dataset.currency : "";
  }
  select.addEventListener("change", update);
  update();
})();
