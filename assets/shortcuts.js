() => {
  const visible = (id) => { const el = document.getElementById(id); return !!el && el.getClientRects().length > 0; };
  const click = (id) => { const b = document.getElementById(id); if (b && !b.disabled) { b.click(); return true; } return false; };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable)) return;
    // Presentation view: arrows move between steps, Escape goes back to editing.
    if (visible("present")) {
      const id = { ArrowRight: "present-next", ArrowLeft: "present-prev", Escape: "present-close" }[e.key];
      if (id && click(id)) e.preventDefault();
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
