import ipaddr from "ipaddr.js";
import type { IPv4, IPv6 } from "ipaddr.js";

type Address = IPv4 | IPv6;

/**
 * Parses a client address. IPv4-mapped IPv6 (`::ffff:203.0.113.45`, as Node reports IPv4
 * peers on dual-stack sockets) becomes plain IPv4 so one allowlist entry matches both.
 * Returns null for anything that is not an address.
 */
export function parseIp(value: string): Address | null {
  if (!ipaddr.isValid(value)) return null;
  try {
    return ipaddr.process(value);
  } catch {
    return null;
  }
}

/**
 * Normalises an allowlist entry (`203.0.113.45`, `198.51.100.0/24`, `2001:db8::/32`) to its
 * canonical CIDR text, or returns null when it is neither an address nor a valid range.
 *
 * @example
 * normalizeCidr("203.0.113.45");    // "203.0.113.45/32"
 * normalizeCidr("10.0.0.0/33");     // null
 */
export function normalizeCidr(entry: string): string | null {
  const text = entry.trim();
  if (text.includes("/")) {
    if (!ipaddr.isValidCIDR(text)) return null;
    const [addr, bits] = ipaddr.parseCIDR(text);
    const a = addr.kind() === "ipv6" && (addr as IPv6).isIPv4MappedAddress() ? (addr as IPv6).toIPv4Address() : addr;
    const prefix = a.kind() !== addr.kind() ? bits - 96 : bits;
    if (prefix < 0) return null;
    return `${a.toString()}/${prefix}`;
  }
  const a = parseIp(text);
  return a ? `${a.toString()}/${a.kind() === "ipv4" ? 32 : 128}` : null;
}

/** A compiled allowlist: true when the address falls in one of its ranges. */
export type IpMatcher = (address: Address) => boolean;

/** Compiles normalised CIDR entries once, so matching does no parsing. */
export function compileAllowlist(entries: readonly string[]): IpMatcher | null {
  if (entries.length === 0) return null;
  const ranges = entries.map((e) => ipaddr.parseCIDR(e));
  return (address) => ranges.some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits));
}

export type { Address as IpAddress };
