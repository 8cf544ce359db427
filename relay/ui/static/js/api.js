// api.js: the batch API and node list over fetch, with the signed-in
// user's bearer token. Errors become ApiError carrying the API's
// {"error":{"code","message","fields"}} body.

/** ApiError is a non-2xx answer from the API. */
export class ApiError extends Error {
  constructor(status, code, message, fields = [], detail = {}) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.detail = detail; // the whole error object (a 409 confirmation_required carries nodes, reasons, impact)
  }
}

/** Client calls the nodebatch API. */
export class Client {
  /**
   * @param {string} base prefix for API paths ('' = same origin)
   * @param {() => string} token returns the current bearer token
   * @param {() => Promise<boolean>} onUnauthorized called on 401; true: the
   *   token was renewed, send the request once more
   */
  constructor(base, token, onUnauthorized) {
    this.base = base ?? '';
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body, retried = false) {
    const headers = { Accept: 'application/json' };
    const tok = this.token();
    if (tok) headers.Authorization = `Bearer ${tok}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, 'network', `${method} ${path}: ${e.message}`);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = { raw: text }; }
    }
    if (!res.ok) {
      if (res.status === 401 && this.onUnauthorized && !retried && await this.onUnauthorized()) return this.request(method, path, body, true);
      const e = data?.error ?? {};
      const msg = typeof e === 'string' ? e : (e.message || data?.raw || res.statusText);
      throw new ApiError(res.status, e.code ?? String(res.status), `${msg}`, e.fields ?? [], typeof e === 'object' ? e : {});
    }
    return { status: res.status, data: data ?? {} };
  }

  /** nodes lists nodes, optionally by label selector. */
  async nodes(selector = '') {
    const q = selector ? `?selector=${encodeURIComponent(selector)}` : '';
    return (await this.request('GET', `/v1/nodes${q}`)).data;
  }

  /** submit posts a batch; answers {status, data}. */
  submit(body) { return this.request('POST', '/v1/batches', body); }

  /** preview asks the API what a batch would do, without creating one. */
  preview(body, pageSize = 1000) { return this.request('POST', `/v1/batches:preview?page_size=${pageSize}`, body); }

  /** batch gets one batch with its results. */
  async batch(id, params = {}) {
    const q = new URLSearchParams(params).toString();
    return (await this.request('GET', `/v1/batches/${encodeURIComponent(id)}${q ? '?' + q : ''}`)).data;
  }

  /** history lists batches, newest first. */
  async history(params = {}) {
    const q = new URLSearchParams(params).toString();
    return (await this.request('GET', `/v1/batches${q ? '?' + q : ''}`)).data;
  }

  /** control posts :cancel, :retry or :revert for a batch. */
  async control(id, verb, body = {}) {
    return (await this.request('POST', `/v1/batches/${encodeURIComponent(id)}:${verb}`, body)).data;
  }

  /** ticket gets a single-use WebSocket ticket. */
  async ticket() {
    return (await this.request('POST', '/v1/progress/tickets', {})).data;
  }
}
