// Automatic logoff (HIPAA 164.312(a)(2)(iii)): the session ends after the gateway's idle time
// (SESSION_IDLE_MINUTES, sent with the tokens) without any input in this tab.

const INPUT_EVENTS = ["pointerdown", "keydown", "wheel", "touchstart"];
const LISTEN = { capture: true, passive: true };

let timer = null;
let idleMs = 0;
let onIdle = () => {};

function restart() {
  clearTimeout(timer);
  timer = setTimeout(() => {
    stopWatchingIdle();
    onIdle();
  }, idleMs);
}

/** Calls `handler` once after `seconds` without input; any input starts the wait again. */
export function watchIdle(seconds, handler) {
  stopWatchingIdle();
  if (!seconds) return;
  idleMs = seconds * 1000;
  onIdle = handler;
  for (const name of INPUT_EVENTS) window.addEventListener(name, restart, LISTEN);
  restart();
}

export function stopWatchingIdle() {
  clearTimeout(timer);
  for (const name of INPUT_EVENTS) window.removeEventListener(name, restart, LISTEN);
}
