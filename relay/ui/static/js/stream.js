// stream.js: one WebSocket to the relay for the whole page, shared by every
// view that watches a batch. The bearer token rides in
// Sec-WebSocket-Protocol (never in the URL); subscriptions are re-sent after
// a reconnect, and the relay then sends each batch's current state first,
// so nothing is missed.

/** Stream multiplexes batch subscriptions over one WebSocket. */
export class Stream {
  /**
   * @param {string} url ws(s) URL of /v1/progress/ws
   * @param {() => string} token current bearer token
   */
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.subs = new Map(); // task_id → Set<handler>
    this.ws = null;
    this.backoff = 500;
    this.timer = null;
    this.statusHandlers = new Set();
    this.status = 'idle';
  }

  /** wsURL derives the progress WebSocket URL from an http(s) base. */
  static wsURL(base) {
    const u = new URL(base || location.origin, location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.pathname = u.pathname.replace(/\/$/, '') + '/v1/progress/ws';
    return u.toString();
  }

  onStatus(f) { this.statusHandlers.add(f); f(this.status); return () => this.statusHandlers.delete(f); }

  setStatus(s) {
    this.status = s;
    for (const f of this.statusHandlers) f(s);
  }

  /** subscribe calls handler with every message of taskID; returns unsubscribe. */
  subscribe(taskID, handler) {
    let set = this.subs.get(taskID);
    const fresh = !set;
    if (!set) { set = new Set(); this.subs.set(taskID, set); }
    set.add(handler);
    if (fresh) this.send({ type: 'subscribe', task_id: taskID });
    this.ensure();
    return () => {
      set.delete(handler);
      if (set.size === 0) {
        this.subs.delete(taskID);
        this.send({ type: 'unsubscribe', task_id: taskID });
      }
    };
  }

  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  ensure() {
    if (this.ws || this.timer || !this.token()) return;
    this.setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url, ['nodebatch.v1', `bearer.${this.token()}`]);
    } catch (e) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      this.setStatus('live');
      for (const id of this.subs.keys()) this.send({ type: 'subscribe', task_id: id });
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      const set = this.subs.get(m.task_id);
      if (set) for (const f of [...set]) f(m);
    };
    ws.onclose = () => {
      this.ws = null;
      if (this.subs.size > 0) this.retry(); else this.setStatus('idle');
    };
  }

  retry() {
    this.setStatus('reconnecting');
    this.timer = setTimeout(() => { this.timer = null; this.ensure(); }, this.backoff);
    this.backoff = Math.min(this.backoff * 2, 10000);
  }

  /**
   * renewed reconnects with the new token (the relay ends a connection
   * when its token expires); the relay sends each subscribed batch's
   * current state again, so nothing is missed.
   */
  renewed() {
    const old = this.ws;
    if (old) {
      old.onclose = null;
      old.close();
      this.ws = null;
    }
    clearTimeout(this.timer);
    this.timer = null;
    if (this.subs.size > 0) this.ensure();
  }

  /** close drops the connection and every subscription (sign-out). */
  close() {
    this.subs.clear();
    clearTimeout(this.timer);
    this.timer = null;
    this.ws?.close();
    this.ws = null;
    this.setStatus('idle');
  }
}
