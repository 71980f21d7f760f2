// vggrepro: on a phone a figure shrinks to the column and its labels blur; each figure a chapter's
// code drew links to its own image, so a tap (or Enter) opens it at full size.
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll(".cell_output img")) {
    if (img.closest("a")) continue;
    const link = document.createElement("a");
    link.href = img.src;
    link.className = "figure-full-size";
    link.title = "the figure at full size";
    img.replaceWith(link);
    link.appendChild(img);
  }
});
