// REST client for the labeling service (docs/api.md): bearer token, JSON errors, retries.

const TOKEN_KEY = "adamcu.token";

export class ApiError extends Error {
  /** status 0 means the server could not be reached. */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** Worth retrying: the server is down, restarting or overloaded. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** Token from `?token=` (then stripped from the address bar) or from sessionStorage. */
export function takeToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, code, message);
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async raw(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, "network", "The server cannot be reached.");
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  async json(method, path, body) {
    const response = await this.raw(method, path, body);
    return response.json();
  }

  get(path) {
    return this.json("GET", path);
  }

  post(path, body) {
    return this.json("POST", path, body ?? {});
  }

  /** Decoded image (ImageBitmap) for an image id; fetched with the bearer header. */
  async image(imageId) {
    const response = await this.raw("GET", `/api/v1/images/${imageId}.png`);
    const blob = await response.blob();
    return createImageBitmap(blob);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `fn` until it succeeds or fails for a non-transient reason.
 * Backoff 1 s, 2 s, 4 s ... capped at `maxDelay`; `onRetry(err, delayMs, attempt)` is told
 * before each wait so the caller can say so on screen. `shouldStop()` ends it early.
 */
export async function withRetry(fn, { onRetry, maxDelay = 15000, shouldStop } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ApiError) || !err.transient) throw err;
      if (shouldStop && shouldStop()) throw err;
      const delay = Math.min(maxDelay, 1000 * 2 ** (attempt - 1));
      if (onRetry) onRetry(err, delay, attempt);
      await sleep(delay);
    }
  }
}

/** One sentence for a failed call, for the status line. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `Unexpected error: ${err.message}`;
  if (err.status === 0) return "The server cannot be reached.";
  if (err.status === 401) return "That token was not accepted. Check it and sign in again.";
  if (err.status === 403) return "This token's role may not do that.";
  if (err.status >= 500) return `The server had a problem (${err.status}).`;
  return err.message;
}
