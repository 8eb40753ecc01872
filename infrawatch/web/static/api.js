// The agent's JSON API (/api/v1/*, Prometheus' envelope). URLs are relative to the page, so the
// page also works behind a reverse proxy that mounts the agent under a path prefix.

export class ApiError extends Error {
  constructor(message, type) {
    super(message);
    this.name = "ApiError";
    this.type = type;
  }
}

/**
 * GET api/v1/<path> with `params` (arrays repeat the parameter, null/"" are left out) and
 * return the envelope's data; an error envelope or a network failure throws ApiError.
 */
export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item != null && item !== "") query.append(key, String(item));
    }
  }
  const text = query.toString();
  const url = `api/v1/${path}${text ? `?${text}` : ""}`;
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    throw new ApiError(`${path}: the agent did not answer`, "network");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`${path}: HTTP ${response.status}`, "http");
  }
  if (!body || body.status !== "success") {
    throw new ApiError(`${path}: ${body?.error || `HTTP ${response.status}`}`, body?.errorType);
  }
  return body.data;
}
