() => {
  const visible = (id) => { const el = document.getElementById(id); return !!el && el.getClientRects().length > 0; };
  const click = (id) => { const b = document.getElementById(id); if (b && !b.disabled) { b.click(); return true; } return false; };
  // On a phone the demo banner would fill the first screen: one line until tapped (or Enter).
  const fold = () => {
    const b = document.getElementById("demo-banner");
    if (!b) return false;
    if (!b.dataset.fold && window.matchMedia("(max-width: 720px)").matches) {
      b.dataset.fold = "1";
      b.classList.add("folded");
      b.tabIndex = 0;
      b.setAttribute("aria-expanded", "false");
      b.title = "Tap to read all";
      const open = () => { b.classList.remove("folded"); b.setAttribute("aria-expanded", "true"); };
      b.addEventListener("click", open);
      b.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { open(); e.preventDefault(); } });
    }
    return true;
  };
  if (!fold()) {
    const o = new MutationObserver(() => { if (fold()) o.disconnect(); });
    o.observe(document.body, { childList: true, subtree: true });
  }
  // Two things gradio's markup leaves unnamed for screen readers (axe: button-name, aria-prohibited-attr):
  // the button around the shared view's picture, and the "Empty value" placeholder of an empty image.
  const name = () => {
    for (const b of document.querySelectorAll("#view-canvas button:not([aria-label])")) {
      if (!b.innerText.trim()) b.setAttribute("aria-label", "The step's picture");
    }
    for (const d of document.querySelectorAll("div.empty[aria-label]:not([role])")) d.setAttribute("role", "img");
  };
  name();
  new MutationObserver(name).observe(document.body, { childList: true, subtree: true });
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable)) return;
    // Presentation view: arrows move between steps, Escape goes back to editing.
    if (visible("present")) {
      const id = { ArrowRight: "present-next", ArrowLeft: "present-prev", Escape: "present-close" }[e.key];
      if (id && click(id)) e.preventDefault();
      return;
    }
    // 1-4 pick the first..fourth variation while the grid of the current step's candidates shows.
    if (/^[1-4]$/.test(e.key) && !(e.ctrlKey || e.metaKey || e.altKey) && visible("variants")) {
      const cell = document.querySelectorAll("#variants .thumbnail-item")[Number(e.key) - 1];
      if (cell) { cell.click(); e.preventDefault(); }
      return;
    }
    // Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z or Ctrl+Y redo, outside text fields (where they edit text).
    if (!(e.ctrlKey || e.metaKey)) return;
    const k = e.key.toLowerCase();
    let id = null;
    if (k === "z" && !e.shiftKey) id = "undo-btn";
    else if ((k === "z" && e.shiftKey) || k === "y") id = "redo-btn";
    if (id && click(id)) e.preventDefault();
  });
}
