/**
 * The client's text/event-stream parser follows the HTML standard's interpretation rules,
 * whatever way the bytes are cut into chunks.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createSseParser } from "../../src/client/sse.js";
import type { SseMessage } from "../../src/client/sse.js";

/** Every message of `text`, fed whole and then cut at every possible place. */
function parseAllWays(text: string): SseMessage[] {
  const whole = createSseParser().feed(text);
  for (let cut = 1; cut < text.length; cut++) {
    const parser = createSseParser();
    const split = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
    assert.deepEqual(split, whole, `cut at ${cut}: ${JSON.stringify(text.slice(0, cut))} | ${JSON.stringify(text.slice(cut))}`);
  }
  return whole;
}

test("a message is dispatched at the blank line, with its event type, or message when none", () => {
  assert.deepEqual(parseAllWays('event: usage\ndata: {"a":1}\n\ndata: plain\n\n'), [
    { event: "usage", data: '{"a":1}', lastEventId: "" },
    { event: "message", data: "plain", lastEventId: "" },
  ]);
  const parser = createSseParser();
  assert.deepEqual(parser.feed("event: usage\ndata: x\n"), [], "not before the blank line");
});

test("lines may end in CRLF, LF or CR, even when a chunk ends between CR and LF", () => {
  assert.deepEqual(parseAllWays("data: a\r\n\r\ndata: b\r\rdata: c\n\n").map((m) => m.data), ["a", "b", "c"]);
});

test("data fields join with line feeds; one space after the colon is dropped, a second is kept", () => {
  assert.deepEqual(parseAllWays("data: one\ndata:two\ndata:  three\ndata\n\n").map((m) => m.data), ["one\ntwo\n three\n"]);
});

test("comments, unknown fields and events without data dispatch nothing", () => {
  assert.deepEqual(parseAllWays(": connected\n\n: heartbeat\n\nevent: usage\n\nfoo: bar\n\n"), []);
  // The event type of an undispatched block does not leak into the next message.
  assert.deepEqual(parseAllWays("event: usage\n\ndata: x\n\n"), [{ event: "message", data: "x", lastEventId: "" }]);
});

test("id sets the last event id from the blank line on, and keeps it; an id with NUL is ignored", () => {
  const parser = createSseParser();
  assert.deepEqual(parser.feed("id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\n\n"), [
    { event: "message", data: "a", lastEventId: "7" },
    { event: "message", data: "b", lastEventId: "7" },
    { event: "message", data: "c", lastEventId: "7" },
  ]);
  assert.equal(parser.lastEventId, "", "an empty id resets it, even without data");
  assert.equal(createSseParser("41").lastEventId, "41", "a reconnection starts from the previous connection's id");
});

test("retry sets the reconnection time only when it is all digits", () => {
  const parser = createSseParser();
  assert.equal(parser.retryMs, null);
  parser.feed("retry: 2000\n: connected\n\n");
  assert.equal(parser.retryMs, 2000);
  parser.feed("retry: 1.5\nretry: soon\n\n");
  assert.equal(parser.retryMs, 2000);
});
