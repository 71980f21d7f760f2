// vggrepro: a header such as "paper top1_val_err" may break after each underscore (a <wbr> there),
// so that on a phone a table beside the paper keeps its columns narrow and this run's column, right
// after the paper's, in view (custom.css; the cells' own text is left alone).
document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll(".cell_output table thead th")) {
    if (th.children.length || !th.textContent.includes("_")) continue;
    const parts = th.textContent.split("_");
    th.textContent = "";
    parts.forEach((part, i) => {
      th.append(part + (i < parts.length - 1 ? "_" : ""));
      if (i < parts.length - 1) th.append(document.createElement("wbr"));
    });
  }
});
