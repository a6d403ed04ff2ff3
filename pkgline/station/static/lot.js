// The lot page: a click on a site of a strip map adds it to (or takes it from) the scrap
// form's list of sites, CARRIER:ROW:COL, and marks it on the map. The list is a plain text
// field, so the form works without a mouse (type the sites) and without this script.
const field = document.getElementById("scrap-sites");

function picked() {
  return field.value.split(/[\s,]+/).filter((s) => s.length > 0);
}

function mark() {
  const chosen = new Set(picked());
  for (const site of document.querySelectorAll(".stripmap rect.site")) {
    const carrier = site.closest("svg").dataset.carrier;
    const key = `${carrier}:${site.dataset.row}:${site.dataset.col}`;
    site.classList.toggle("picked", chosen.has(key));
  }
}

if (field) {
  for (const map of document.querySelectorAll(".stripmap")) {
    map.classList.add("pickable");
    map.addEventListener("click", (event) => {
      const site = event.target.closest("rect.site");
      if (!site) return;
      const key = `${map.dataset.carrier}:${site.dataset.row}:${site.dataset.col}`;
      const sites = picked();
      const at = sites.indexOf(key);
      if (at >= 0) sites.splice(at, 1);
      else sites.push(key);
      field.value = sites.join(", ");
      mark();
    });
  }
  field.addEventListener("input", mark);
  mark();
}
