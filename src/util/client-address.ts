/**
 * The key under which per-address limits count a client. An IPv4 client is its address. An IPv6
 * client is the /64 prefix its address belongs to: a /64 is the smallest block a site or a
 * subscriber is given (RFC 6177; SLAAC, RFC 4862, needs a whole /64 per link), and privacy
 * addresses (RFC 8981) let one host pick any of its 2^64 addresses at will, so counting per full
 * address would hand every client an unlimited number of fresh budgets.
 *
 * An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, RFC 4291 §2.5.5.2: what a dual-stack socket
 * reports for an IPv4 peer) is that IPv4 address, so one client never has two keys.
 */
import net from 'node:net';

export function clientAddressKey(address: string): string {
  if (net.isIPv4(address)) return address;
  const groups = ipv6Groups(address);
  if (groups === null) return address;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (zone index ignored), or null when it is not one. */
function ipv6Groups(text: string): number[] | null {
  let address = text.split('%', 1)[0] ?? '';
  if (!net.isIPv6(address)) return null;
  // A dotted IPv4 tail (`::ffff:192.0.2.1`) is the last two groups written another way.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    address = `${address.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const [head = '', tail] = address.split('::');
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}
