// Sign-in shared by both views: token from ?token= or sessionStorage, checked with GET /me.

import { Api, ApiError, describeError, storeToken, takeToken, withRetry } from "./api.js";

/**
 * Wire the sign-in form and resolve the session.
 * `roles`: roles allowed on this page; `onSignedIn(api, me)` runs exactly once per sign-in.
 */
export function setupSignIn({ roles, onSignedIn }) {
  const section = document.getElementById("signin");
  const form = document.getElementById("signin-form");
  const input = document.getElementById("token-input");
  const message = document.getElementById("signin-message");
  let generation = 0;

  const say = (text, kind = "info") => {
    message.textContent = text;
    message.dataset.kind = kind;
  };

  const showForm = () => {
    section.hidden = false;
    document.body.classList.remove("signed-in");
    input.focus();
  };

  async function check(token) {
    generation += 1;
    const mine = generation;
    const api = new Api(token);
    say("Checking token…");
    let me;
    try {
      me = await withRetry(() => api.get("/api/v1/me"), {
        shouldStop: () => mine !== generation,
        onRetry: (err, delay) =>
          say(`${describeError(err)} Retrying in ${Math.round(delay / 1000)} s…`, "warn"),
      });
    } catch (err) {
      if (mine !== generation) return;
      if (err instanceof ApiError && err.status === 401) {
        storeToken(null);
        say("That token was not recognised. Paste the token you were given.", "error");
      } else {
        say(describeError(err), "error");
      }
      showForm();
      return;
    }
    if (mine !== generation) return;
    if (!roles.includes(me.role)) {
      storeToken(null);
      say(`This is a ${me.role} token; this page needs: ${roles.join(" or ")}.`, "error");
      showForm();
      return;
    }
    storeToken(token);
    section.hidden = true;
    say("");
    document.body.classList.add("signed-in");
    for (const el of document.querySelectorAll("[data-me-name]")) {
      el.textContent = `${me.name} (${me.role})`;
    }
    onSignedIn(api, me);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      say("Enter a token.", "error");
      return;
    }
    input.value = "";
    check(token);
  });

  for (const button of document.querySelectorAll("[data-signout]")) {
    button.addEventListener("click", () => {
      storeToken(null);
      window.location.reload();
    });
  }

  const token = takeToken();
  if (token) check(token);
  else showForm();

  /** The token stopped working mid-session (revoked): back to the form. */
  return {
    expire(text = "Your token is no longer accepted. Sign in again.") {
      generation += 1;
      storeToken(null);
      say(text, "error");
      showForm();
    },
  };
}
