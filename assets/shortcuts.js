() => {
  // Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z or Ctrl+Y redo, outside text fields (where they edit text).
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable)) return;
    if (!(e.ctrlKey || e.metaKey)) return;
    const k = e.key.toLowerCase();
    let id = null;
    if (k === "z" && !e.shiftKey) id = "undo-btn";
    else if ((k === "z" && e.shiftKey) || k === "y") id = "redo-btn";
    if (!id) return;
    const b = document.getElementById(id);
    if (b && !b.disabled) { e.preventDefault(); b.click(); }
  });
}
