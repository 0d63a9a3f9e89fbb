// The web terminal: xterm.js on a websocket to /ws/sites/NAME/terminal (api/terminal_socket.py).
// Every element with class "director-terminal" and a data-socket path becomes a terminal.
// Input goes as binary frames; output comes as binary frames whose first byte names the stream;
// text frames are JSON control messages: {"resize"}, {"started"}, {"error"}, {"end"}.
(function () {
  "use strict";

  function start(element) {
    const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14, scrollback: 5000 });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(element);
    fit.fit();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + element.dataset.socket);
    socket.binaryType = "arraybuffer";
    const encoder = new TextEncoder();
    const status = element.parentElement.querySelector(".director-terminal-status");
    const say = function (text) {
      element.dataset.state = text;
      if (status) status.textContent = text;
    };

    socket.addEventListener("open", function () {
      socket.send(JSON.stringify({ cols: term.cols, rows: term.rows }));
    });
    socket.addEventListener("message", function (event) {
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data).subarray(1));
        return;
      }
      const message = JSON.parse(event.data);
      if (message.started) {
        say("connected");
        term.focus();
      } else if (message.error) {
        say("refused");
        term.write("\r\n\x1b[31m" + message.error + "\x1b[0m\r\n");
      } else if (message.end) {
        say("ended");
        term.write("\r\n[session ended: " + message.end.reason + "]\r\n");
      }
    });
    socket.addEventListener("close", function () {
      if (element.dataset.state === "connected") say("ended");
    });
    term.onData(function (data) {
      if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    });
    term.onResize(function (size) {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ resize: { cols: size.cols, rows: size.rows } }));
      }
    });
    window.addEventListener("resize", function () {
      fit.fit();
    });
    element.directorTerminal = term;
  }

  function startAll() {
    document.querySelectorAll(".director-terminal[data-socket]").forEach(function (element) {
      if (!element.directorTerminal) start(element);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startAll);
  } else {
    startAll();
  }
  // A page that swaps the partial in (htmx) starts it too.
  document.addEventListener("htmx:afterSettle", startAll);
})();
