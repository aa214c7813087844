// Helpers shared by the example's pages: show an EventSource's state, and keep what it received.

// The state of `source` ("connecting", "open" or "closed"), kept in `element`'s text and
// data-state. EventSource fires "error" when a connection drops; it then reconnects on its
// own (state "connecting") unless the server answered with an error status ("closed").
function showConnection(source, element) {
  const states = ["connecting", "open", "closed"];
  const show = () => {
    element.textContent = states[source.readyState];
    element.dataset.state = states[source.readyState];
  };
  source.addEventListener("open", show);
  source.addEventListener("error", show);
  show();
}

// Every event of the given types, as received, in `window.sseLog` (the last 1000):
// look at it in the browser's console.
window.sseLog = [];
function keepLog(source, types) {
  for (const type of types) {
    source.addEventListener(type, (event) => {
      window.sseLog.push({type: event.type, data: event.data, lastEventId: event.lastEventId});
      if (window.sseLog.length > 1000) window.sseLog.shift();
    });
  }
}

// The same for django-sse's browser client (django_sse/eventsource.js), which reports
// its state through onState: the connection's state, and whether this tab holds the
// shared connection ("leader") or gets its events from the tab that does ("follower").
function showState(element, state, role) {
  element.textContent = role === "follower" ? `${state} (shared)` : state;
  element.dataset.state = state;
  element.dataset.role = role;
}

function keepLogOf(stream, types) {
  for (const type of types) {
    stream.on(type, (data, event) => {
      window.sseLog.push({type, data: event.data, lastEventId: event.lastEventId, parsed: typeof data});
      if (window.sseLog.length > 1000) window.sseLog.shift();
    });
  }
}
