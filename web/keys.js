// Keyboard for the annotator: class keys and commands, never while typing in a field.

/**
 * `commands`: key (KeyboardEvent.key) -> action, e.g. {" ": skip, Backspace: undo}.
 * `classFor(key)` -> class id or undefined; `answer(classId)`. `blocked()` true while a modal
 * (the help) or the sign-in form owns the keyboard. Auto-repeat never answers twice.
 */
export function installKeys({ commands, classFor, answer, blocked }) {
  document.addEventListener("keydown", (e) => {
    if (blocked() || e.ctrlKey || e.metaKey || e.altKey) return;
    // a slider (the zoom) keeps the keys: only fields that take typing or a choice own them
    const field = "input:not([type=range]), select, textarea";
    if (e.target instanceof Element && e.target.closest(field)) return;
    const act = commands[e.key];
    if (act) {
      e.preventDefault();
      if (!e.repeat) act();
      return;
    }
    const classId = classFor(e.key.toLowerCase());
    if (classId === undefined) return;
    e.preventDefault();
    if (!e.repeat) answer(classId);
  });
  // Space on a focused button would "click" it on keyup; here Space means skip.
  document.addEventListener("keyup", (e) => {
    if (e.key === " " && e.target instanceof Element && e.target.closest("button")) {
      e.preventDefault();
    }
  });
}
