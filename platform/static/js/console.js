// The operator console's behaviours (platform/templates/console/). The CSP allows scripts from
// 'self' only and no inline styles, so geometry comes from data- attributes and is set here
// through the CSSOM, which the CSP permits.

// htmx swaps only 2xx answers by default; the decision panel also comes back as 422 (no
// reason given) and 409 (someone decided first), and those must be shown, not dropped.
if (window.htmx) {
  window.htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "409", swap: true, error: false },
    { code: "422", swap: true, error: false },
    { code: "[45]..", swap: false, error: true },
  ];
}

// Flagged frames: each .box carries its detection's box in the frame's own pixels
// (data-x, -y, -width, -height); place it in percent of the image, so it stays on the spot
// at whatever size the image is shown.
function placeBoxes(frame) {
  const image = frame.querySelector("img");
  if (!image || !image.naturalWidth || !image.naturalHeight) return;
  const across = image.naturalWidth;
  const down = image.naturalHeight;
  for (const box of frame.querySelectorAll(".box[data-x]")) {
    const x = Number(box.dataset.x);
    const y = Number(box.dataset.y);
    const width = Number(box.dataset.width);
    const height = Number(box.dataset.height);
    if (![x, y, width, height].every(Number.isFinite)) continue;
    box.style.left = `${(100 * x) / across}%`;
    box.style.top = `${(100 * y) / down}%`;
    box.style.width = `${(100 * width) / across}%`;
    box.style.height = `${(100 * height) / down}%`;
    box.hidden = false;
  }
}

function setUpFrames(root) {
  for (const frame of root.querySelectorAll("[data-console-frame]")) {
    const image = frame.querySelector("img");
    if (!image) continue;
    if (image.complete) placeBoxes(frame);
    image.addEventListener("load", () => placeBoxes(frame));
  }
}

document.addEventListener("DOMContentLoaded", () => setUpFrames(document));
document.addEventListener("htmx:afterSettle", (event) => setUpFrames(event.target));
