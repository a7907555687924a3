// Class palette: keys 1-9 then a-z (minus command keys), buttons with name and colour.

/** Keys the annotator uses for commands; never given to a class. */
export const COMMAND_KEYS = new Set([" ", "0", "+", "=", "-", "/", "Backspace", "?", "Escape",
  "Enter", "Tab"]);

const CLASS_KEYS = [..."123456789abcdefghijklmnopqrstuvwxyz"].filter((k) => !COMMAND_KEYS.has(k));

/** [{key, cls}] for the run's classes in id order; classes past the key list get no key. */
export function assignKeys(classes) {
  const sorted = [...classes].sort((a, b) => a.id - b.id);
  return sorted.map((cls, i) => ({ key: CLASS_KEYS[i] ?? null, cls }));
}

function rgb([r, g, b]) {
  return `rgb(${r}, ${g}, ${b})`;
}

/** Black or white, whichever reads better on the colour (WCAG relative luminance). */
export function inkFor([r, g, b]) {
  const lin = (c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const l = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  return l > 0.179 ? "#000" : "#fff";
}

/** Fill `container` with one button per class; `onPick(classId)` on click. */
export function renderPalette(container, entries, onPick) {
  container.replaceChildren();
  for (const { key, cls } of entries) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "class-btn";
    button.dataset.classId = String(cls.id);
    button.dataset.testid = `class-${cls.id}`;
    if (key) {
      button.setAttribute("aria-keyshortcuts", key);
      button.title = `${cls.name} (key ${key})`;
    }
    const kbd = document.createElement("kbd");
    kbd.textContent = key ?? "·";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = rgb(cls.color);
    swatch.style.color = inkFor(cls.color);
    swatch.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = cls.name;
    button.append(kbd, swatch, name);
    button.addEventListener("click", () => onPick(cls.id));
    container.append(button);
  }
}

/** Briefly mark the button of the class just chosen (feedback for key presses). */
export function flash(container, classId) {
  const button = container.querySelector(`[data-class-id="${classId}"]`);
  if (!button) return;
  button.classList.remove("picked");
  void button.offsetWidth; // restart the animation
  button.classList.add("picked");
}
