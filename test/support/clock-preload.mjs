/**
 * Loaded with `node --import` into a `keygate serve` child by startServe({ clock: true }): the
 * child's wall clock (Date.now() and `new Date()`, which keygate's clock and jose read) runs
 * `offset` ms ahead of the real one, and the parent moves it forward over the IPC channel, so
 * a suite can pass a key's expiry, a token's `exp` or a 15-minute block without sleeping.
 * Timers are untouched: only what reads the date moves.
 */
const RealDate = Date;
let offset = 0;
const now = () => RealDate.now() + offset;

globalThis.Date = new Proxy(RealDate, {
  construct(target, args, newTarget) {
    return Reflect.construct(target, args.length === 0 ? [now()] : args, newTarget);
  },
  // Date() called as a function gives the current time as a string.
  apply() {
    return new RealDate(now()).toString();
  },
  get(target, prop, receiver) {
    return prop === "now" ? now : Reflect.get(target, prop, receiver);
  },
});

if (process.send) {
  process.on("message", (message) => {
    if (message?.type !== "keygate-test-clock") return;
    if (typeof message.offsetMs === "number" && message.offsetMs >= offset) offset = message.offsetMs;
    process.send({ type: "keygate-test-clock", offsetMs: offset });
  });
  // The channel must not keep the child alive once keygate shuts down.
  process.channel?.unref();
}
