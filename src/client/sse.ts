/**
 * The text/event-stream format, parsed as the HTML standard's EventSource does
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
 * lines end in CRLF, LF or CR; `data` fields join with LF; `id` sets the last event id
 * (one containing NUL is ignored); `retry` sets the reconnection time when it is all digits;
 * comments (`:`) and unknown fields are ignored. Decoding (UTF-8, BOM dropped) is the caller's
 * `TextDecoder`.
 */

/** One dispatched message. */
export interface SseMessage {
  /** The `event` field, or `message` when there was none. */
  event: string;
  /** The `data` fields, joined with line feeds. */
  data: string;
  /** The stream's last event id once this message was dispatched ("" when none was sent). */
  lastEventId: string;
}

/** A parser of one connection's text: `feed` each decoded chunk, get the messages it completed. */
export interface SseParser {
  feed(text: string): SseMessage[];
  /** The latest valid `retry` field, in ms; null until the stream sent one. */
  readonly retryMs: number | null;
  /** The last event id as of the last blank line: what a reconnection sends as `Last-Event-ID`. */
  readonly lastEventId: string;
}

/**
 * @example
 * const parser = createSseParser();
 * parser.feed("event: usage\ndata: {\"api\":\"pay\"}\n"); // []: not dispatched before the blank line
 * parser.feed("\n");                                      // [{ event: "usage", data: "{\"api\":\"pay\"}", lastEventId: "" }]
 */
export function createSseParser(lastEventId = ""): SseParser {
  // Carried over from the previous connection of the same stream, as EventSource does.
  let rest = "";
  // A chunk that ended in CR: an LF starting the next chunk belongs to the same line end.
  let skipLf = false;
  let data = "";
  let event = "";
  let idBuffer = lastEventId;
  let lastId = lastEventId;
  let retryMs: number | null = null;

  const line = (text: string, out: SseMessage[]): void => {
    if (text === "") {
      lastId = idBuffer;
      if (data === "") {
        event = "";
        return;
      }
      out.push({ event: event || "message", data: data.slice(0, -1), lastEventId: lastId });
      data = "";
      event = "";
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data += `${value}\n`;
    else if (field === "event") event = value;
    else if (field === "id") { if (!value.includes("\0")) idBuffer = value; }
    else if (field === "retry") { if (/^\d+$/.test(value)) retryMs = Number(value); }
  };

  return {
    get retryMs() { return retryMs; },
    get lastEventId() { return lastId; },
    feed(chunk) {
      const out: SseMessage[] = [];
      if (chunk === "") return out;
      if (skipLf && chunk.charCodeAt(0) === 10) chunk = chunk.slice(1);
      skipLf = false;
      const text = rest + chunk;
      let start = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        line(text.slice(start, i), out);
        if (c === 13) {
          if (i + 1 === text.length) skipLf = true;
          else if (text.charCodeAt(i + 1) === 10) i++;
        }
        start = i + 1;
      }
      rest = text.slice(start);
      return out;
    },
  };
}
