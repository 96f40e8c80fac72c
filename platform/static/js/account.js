// Account pages (keys, webhooks, team): small behaviours wired by data- attributes, since the
// CSP allows scripts from 'self' only (no inline handlers).

// The key form: origins and templates matter only for publishable keys.
for (const form of document.querySelectorAll("form[data-key-form]")) {
  const kind = form.querySelector("select[name=kind]");
  const extra = form.querySelector("[data-publishable-only]");
  if (!kind || !extra) continue;
  const sync = () => { extra.hidden = kind.value !== "publishable"; };
  kind.addEventListener("change", sync);
  sync();
}

// <button data-copy="element-id" data-copied="Copied">: copy a shown-once value.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  const text = source.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = button.getAttribute("data-copied") || button.textContent;
  } catch {
    // no clipboard permission (an insecure origin): select the text for Ctrl+C instead
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});
