// vggrepro: each row of a chapter's claims table gets an id from its number ("4.3" -> "claim-4-3"),
// so that the results page's matrix links to it (vggrepro.experiments.claims.anchor). A claims table
// is a pandas table whose header has "claim" and "verdict"; its index is the claim's number.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table")) {
    const head = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    if (!(head.includes("claim") && head.includes("verdict"))) continue;
    table.classList.add("claims-table");  // custom.css: its text columns keep a readable width
    for (const th of table.querySelectorAll("tbody tr > th:first-child")) {
      const id = th.textContent.trim();
      if (/^\d+\.\d+$/.test(id)) th.parentElement.id = "claim-" + id.replace(".", "-");
    }
  }
  // the ids did not exist when the browser looked for the link's target: go there now
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) {
    target.classList.add("claim-target");
    target.scrollIntoView({block: "center"});
  }
});
