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
