/**
 * Compiled allowlists against ipaddr.js's own matching, over random addresses and ranges of
 * every prefix length, IPv4 and IPv6 mixed: the hand-written IPv4 match must agree with it.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import ipaddr from "ipaddr.js";
import { compileAllowlist, normalizeCidr, parseIp } from "../../src/lib/ip.js";

const byte = (): number => Math.floor(Math.random() * 256);
const v4 = (): string => `${byte()}.${byte()}.${byte()}.${byte()}`;
const v6 = (): string => Array.from({ length: 8 }, () => Math.floor(Math.random() * 65536).toString(16)).join(":");

/** What ipaddr.js says: the address is in one of the ranges of its own kind. */
function reference(entries: string[], address: ReturnType<typeof parseIp>): boolean {
  return entries.some((e) => {
    const [net, bits] = ipaddr.parseCIDR(e);
    return net.kind() === address!.kind() && address!.match(net, bits);
  });
}

describe("compileAllowlist", () => {
  test("agrees with ipaddr.js for random IPv4 and IPv6 ranges of every length and addresses near them", () => {
    for (let round = 0; round < 300; round++) {
      const entries: string[] = [];
      for (let i = 0; i < 1 + (round % 4); i++) {
        entries.push(Math.random() < 0.7
          ? normalizeCidr(`${v4()}/${Math.floor(Math.random() * 33)}`)!
          : normalizeCidr(`${v6()}/${Math.floor(Math.random() * 129)}`)!);
      }
      const matcher = compileAllowlist(entries)!;
      for (let j = 0; j < 40; j++) {
        // Half the addresses inside a range's network (its first address, varied in the last
        // octet), half anywhere.
        let text: string;
        if (j % 2 === 0) {
          const [net] = ipaddr.parseCIDR(entries[j % entries.length]!);
          text = net.kind() === "ipv4" ? net.toString().replace(/\.\d+$/, `.${byte()}`) : net.toString();
        } else {
          text = Math.random() < 0.7 ? v4() : v6();
        }
        const address = parseIp(text)!;
        assert.equal(matcher(address), reference(entries, address), `${text} in ${entries.join(", ")}`);
      }
    }
  });

  test("edge cases: /0, /32, /31, the ends of a range, an IPv4-mapped client, IPv4 entries against IPv6 clients", () => {
    const cases: Array<[string[], string, boolean]> = [
      [["0.0.0.0/0"], "255.255.255.255", true],
      [["203.0.113.7/32"], "203.0.113.7", true],
      [["203.0.113.7/32"], "203.0.113.8", false],
      [["203.0.113.6/31"], "203.0.113.7", true],
      [["203.0.113.6/31"], "203.0.113.8", false],
      [["198.51.100.0/24"], "198.51.100.0", true],
      [["198.51.100.0/24"], "198.51.100.255", true],
      [["198.51.100.0/24"], "198.51.101.0", false],
      [["128.0.0.0/1"], "200.1.1.1", true],
      [["128.0.0.0/1"], "127.255.255.255", false],
      [["198.51.100.0/24"], "::ffff:198.51.100.9", true],
      [["198.51.100.0/24"], "2001:db8::1", false],
      [["2001:db8::/32"], "2001:db8:ffff::1", true],
      [["2001:db8::/32"], "198.51.100.9", false],
      [["10.0.0.0/8", "2001:db8::/32"], "10.200.0.1", true],
    ];
    for (const [entries, text, expected] of cases) {
      assert.equal(compileAllowlist(entries)!(parseIp(text)!), expected, `${text} in ${entries.join(", ")}`);
    }
  });

  test("the same list compiles to one shared matcher; an empty list to none", () => {
    assert.equal(compileAllowlist(["198.51.100.0/24", "203.0.113.0/24"]), compileAllowlist(["198.51.100.0/24", "203.0.113.0/24"]));
    assert.notEqual(compileAllowlist(["198.51.100.0/24"]), compileAllowlist(["203.0.113.0/24"]));
    assert.equal(compileAllowlist([]), null);
  });
});
