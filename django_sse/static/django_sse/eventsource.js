// django-sse's browser client: an ES module, no build step, no dependency.
//
//   import {connect} from "/static/django_sse/eventsource.js";
//   const stream = connect("/feed/events/", {json: true, onReset: () => location.reload()});
//   stream.on("message", (data, event) => show(data));
//
// It wraps EventSource with JSON parsing per event type, a callback for
// django-sse's "stream-reset" event, connection-state callbacks, and one
// connection shared by every tab of the origin that reads the same URL: the
// tabs elect a leader with the Web Locks API, the leader alone holds the
// EventSource and passes each event to the other tabs over a BroadcastChannel.
// When the leader tab closes, another tab takes the lock and reconnects,
// resuming from the last event id any tab saw (the lastEventId query
// parameter, which django-sse reads like the Last-Event-ID header).
// When the server refuses the stream (a 503 of SSE_MAX_STREAMS, a 5xx from a
// proxy), EventSource closes for good and never retries; the client then
// opens it again after a delay that doubles from reopen.min to reopen.max ms
// (jittered, so that a crowd of browsers does not come back at once). When
// shared, the leader gives the lock up at once and queues for it again: the
// tabs take turns, each waiting out the delay that the last failure, in any
// tab, set; a tab opened later joins the queue and reads what the next
// leader's connection brings.
// Without Web Locks or BroadcastChannel, or with {shared: false}, each tab
// holds its own EventSource. Plain EventSource keeps working: this is optional.

const STATES = ["connecting", "open", "closed"];
const REOPEN = {min: 1000, max: 30000};

export function connect(url, options = {}) {
  return new SharedEventSource(url, options);
}

export class SharedEventSource {
  // options: json (true, or a list of event types whose data is JSON; default false),
  // shared (default true), withCredentials (default false), resetEvent (default
  // "stream-reset"), onReset(channels, event) (default: a "django-sse:reset" event
  // on window, for the page to fetch its state again), onState(state, role),
  // reopen ({min, max} in ms, default {min: 1000, max: 30000}: the delays before
  // opening a stream the server refused again; false: stay closed, as
  // EventSource does, until a tab opened later connects).
  constructor(url, options = {}) {
    this.url = new URL(url, location.href).href;
    this.options = {json: false, shared: true, withCredentials: false, resetEvent: "stream-reset", ...options};
    if (this.options.reopen !== false) this.options.reopen = {...REOPEN, ...this.options.reopen};
    this.state = "connecting";
    this.role = "alone"; // "leader" or "follower" when shared
    this.lastEventId = "";
    this._handlers = new Map(); // event type -> set of handlers
    this._types = new Set(["message", this.options.resetEvent]); // types this tab reads
    this._leaderTypes = new Set(); // types the leader's EventSource listens to
    this._source = null;
    this._closed = false;
    this._failures = 0; // refusals in a row, of this tab's connection or the leaders'
    this._retryAt = 0; // Date.now() before which no tab opens the connection again
    this._timer = null;
    const canShare = this.options.shared && globalThis.navigator?.locks && globalThis.BroadcastChannel;
    if (canShare) {
      this._share();
    } else {
      this._open();
    }
  }

  // Call handler(data, event) for each event of `type`; data is parsed when `json` asks.
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    if (!this._types.has(type)) {
      this._types.add(type);
      this._listen([type]);
      this._post({kind: "listen", types: [type]});
    }
    return this;
  }

  off(type, handler) {
    this._handlers.get(type)?.delete(handler);
    return this;
  }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    this._source?.close();
    this._source = null;
    this._abort?.abort();
    this._release?.(); // the next tab in line becomes the leader
    this._channel?.close();
    this._setState("closed");
  }

  // Sharing -----------------------------------------------------------------

  _share() {
    this._key = "django-sse " + this.url;
    this.role = "follower";
    this._channel = new BroadcastChannel(this._key);
    this._channel.onmessage = (message) => this._receive(message.data);
    this._abort = new AbortController();
    this._queue();
    this._post({kind: "listen", types: [...this._types]});
    this._post({kind: "hello"});
  }

  // Wait for the lock; holding it, this tab is the leader and opens the connection.
  _queue() {
    navigator.locks
      .request(this._key, {signal: this._abort.signal}, () => new Promise((release) => {
        this._release = release;
        if (this._closed) return release();
        this.role = "leader";
        this._openWhenDue();
      }))
      .catch(() => {}); // aborted by close() (or by a refusal without reopen) while waiting
  }

  // The leader's connection was refused: give the lock to the next tab in line.
  _resign() {
    const release = this._release;
    this._release = null;
    this.role = "follower";
    this._post({kind: "refused", failures: this._failures, retryAt: this._retryAt});
    release?.();
    if (this.options.reopen) this._queue(); // behind the tabs already waiting
  }

  _post(message) {
    if (this._channel && !this._closed) this._channel.postMessage(message);
  }

  _receive(message) {
    if (this._closed) return;
    switch (message.kind) {
      case "event": // from the leader
        if (this.role !== "leader") this._deliver(message.type, message.data, message.lastEventId);
        break;
      case "state":
        if (this.role === "leader") break;
        if (message.state === "open") this._failures = 0;
        this._setState(message.state);
        break;
      case "listen": // a tab reads these types: the leader's EventSource must listen to them
        if (this.role === "leader") this._listen(message.types);
        break;
      case "who-listens": // a new leader asks
        this._post({kind: "listen", types: [...this._types]});
        break;
      case "hello": // a new tab: tell it the connection's state
        if (this.role === "leader") this._post({kind: "state", state: this.state});
        break;
      case "refused": // the leader's connection was refused; it gave the lock up
        this._failures = message.failures;
        this._retryAt = message.retryAt;
        if (!this.options.reopen) this._abort.abort(); // stay closed, as EventSource would
        break;
    }
  }

  // The connection (the leader's, or this tab's own) -------------------------

  // Open the connection, once the delay after the last refusal (in any tab) is over.
  _openWhenDue() {
    const wait = this._retryAt - Date.now();
    if (wait <= 0) return this._open();
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._closed) this._open();
    }, wait);
  }

  _open() {
    const url = new URL(this.url);
    if (this.lastEventId) url.searchParams.set("lastEventId", this.lastEventId);
    const source = new EventSource(url.href, {withCredentials: this.options.withCredentials});
    this._source = source;
    this._leaderTypes = new Set();
    this._setState("connecting");
    source.addEventListener("open", () => {
      this._failures = 0;
      this._setState("open");
    });
    source.addEventListener("error", () => {
      if (source !== this._source) return;
      if (source.readyState === EventSource.CLOSED) return this._refused();
      this._setState(STATES[source.readyState]); // a lost connection: EventSource retries
    });
    this._listen(this._types);
    // The other tabs' types, on the new EventSource (their answers come after this).
    if (this.role === "leader") this._post({kind: "who-listens"});
  }

  // The server refused the stream (an answer other than 200 text/event-stream):
  // EventSource has closed for good. Open it again later, or let the next tab.
  _refused() {
    this._source.close();
    this._source = null;
    this._setState("closed");
    const reopen = this.options.reopen;
    if (reopen) {
      this._failures += 1;
      const delay = Math.min(reopen.max, reopen.min * 2 ** (this._failures - 1));
      this._retryAt = Date.now() + delay * (0.5 + Math.random() / 2);
    }
    if (this.role === "leader") {
      this._resign();
    } else if (reopen) {
      this._openWhenDue();
    }
  }

  _listen(types) {
    const source = this._source;
    if (!source) return;
    for (const type of types) {
      if (this._leaderTypes.has(type)) continue;
      this._leaderTypes.add(type);
      source.addEventListener(type, (event) => {
        this._post({kind: "event", type, data: event.data, lastEventId: event.lastEventId});
        this._deliver(type, event.data, event.lastEventId);
      });
    }
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    if (this.role === "leader") this._post({kind: "state", state});
    this.options.onState?.(state, this.role);
  }

  _deliver(type, raw, lastEventId) {
    if (lastEventId) this.lastEventId = lastEventId;
    const event = {type, data: raw, lastEventId};
    if (type === this.options.resetEvent) {
      const channels = (parse(raw, {}) || {}).channels ?? [];
      if (this.options.onReset) {
        this.options.onReset(channels, event);
      } else {
        window.dispatchEvent(new CustomEvent("django-sse:reset", {detail: {url: this.url, channels}}));
      }
    }
    const handlers = this._handlers.get(type);
    if (!handlers?.size) return;
    const json = this.options.json === true || (Array.isArray(this.options.json) && this.options.json.includes(type));
    const data = json ? parse(raw, raw) : raw;
    for (const handler of handlers) handler(data, event);
  }
}

// JSON.parse, or `otherwise` for text that is not JSON (then handlers get the text).
function parse(text, otherwise) {
  try {
    return JSON.parse(text);
  } catch {
    return otherwise;
  }
}
