import { setFlagsFromString } from "node:v8";

/**
 * The V8 setting `keygate serve` gives its own process before it builds its servers: no
 * allocation-site pretenuring.
 *
 * Why (measured): a gateway process on Node 20.20, started the same way several times, ended up
 * in one of two states. In the bad one it promoted ~4 MB per young-generation collection, each
 * took ~5 ms instead of ~0.6 ms, and garbage collection cost ~17 µs per proxied request
 * instead of ~2 µs (`--trace-gc` over 50,000 requests; bench/README.md). With this setting,
 * at start or set here at run time, no start reached the bad state.
 * Why (inferred, not traced: V8's pretenuring trace is not in release builds): V8 decides per
 * allocation site, from how many of its objects survive a young-generation collection, to
 * allocate them in the old generation from then on. Early on, while the young generation is
 * small and collected every few milliseconds, objects that live for one proxied request look
 * long-lived; once a site is tenured, its objects outlive their request until a full
 * collection, and so does every young object they point to. A request/response server
 * allocates little that lives long, so it loses little by the setting.
 *
 * Not applied by `buildServer` itself: it is a setting of the whole process, and a process
 * that embeds keygate's server is its owner's to tune (docs/deploy.md).
 */
export function tuneV8ForServing(): void {
  setFlagsFromString("--no-allocation-site-pretenuring");
}
