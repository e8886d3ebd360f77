import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address, parsed strictly: the forms an operator writes in `--trusted-proxy`
/// and a proxy writes in `X-Forwarded-For`, and nothing else.
///
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address it maps, as tailscaled
/// treats it, so that a dual-stack socket's peers match IPv4 prefixes.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address in network byte order: 4 bytes for IPv4, 16 for IPv6.
    public let bytes: [UInt8]

    /// Whether this is an IPv4 address.
    public var isIPv4: Bool { bytes.count == 4 }

    /// Whether this is a loopback address (`127.0.0.0/8` or `::1`).
    public var isLoopback: Bool {
        isIPv4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// An address from its bytes (4 or 16 of them), or nil for any other count.
    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4:
            self.bytes = bytes
        case 16:
            let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
            self.bytes = Array(bytes.prefix(12)) == mappedPrefix ? Array(bytes.suffix(4)) : bytes
        default:
            return nil
        }
    }

    /// Parses `text` as exactly one address: IPv4 in dotted-decimal form (four decimal octets, no
    /// leading zeros), or IPv6 in any RFC 4291 text form, optionally in square brackets.
    ///
    /// - Important: No port, zone, surrounding space, host name or other notation is accepted:
    ///   anything that is not plainly an address is nil, so that a caller's identity is never
    ///   looked up for a value that only resembles one.
    public init?(parsing text: String) {
        var candidate = Substring(text)
        if candidate.hasPrefix("[") {
            guard candidate.hasSuffix("]"), candidate.count > 2 else { return nil }
            candidate = candidate.dropFirst().dropLast()
            guard candidate.contains(":") else { return nil }
        }
        // inet_pton reads a C string: refuse a NUL (or anything else an address never holds)
        // before it can cut the text short.
        guard !candidate.isEmpty, candidate.utf8.count <= 45,
            candidate.allSatisfy({ $0.isASCII && ($0.isHexDigit || $0 == "." || $0 == ":") })
        else { return nil }
        let value = String(candidate)
        if !value.contains(":") {
            var address = in_addr()
            guard inet_pton(AF_INET, value, &address) == 1 else { return nil }
            self.init(bytes: withUnsafeBytes(of: &address) { Array($0) })
        } else {
            var address = in6_addr()
            guard inet_pton(AF_INET6, value, &address) == 1 else { return nil }
            self.init(bytes: withUnsafeBytes(of: &address) { Array($0) })
        }
    }

    /// The IP address of a socket address; nil for a unix-domain socket.
    public init?(_ socketAddress: SocketAddress) {
        switch socketAddress {
        case .v4(let address):
            var raw = address.address.sin_addr
            self.init(bytes: withUnsafeBytes(of: &raw) { Array($0) })
        case .v6(let address):
            var raw = address.address.sin6_addr
            self.init(bytes: withUnsafeBytes(of: &raw) { Array($0) })
        case .unixDomainSocket:
            return nil
        }
    }

    /// The address's usual text: dotted decimal, or compressed lower-case IPv6 without brackets.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var copy = bytes
        let family = isIPv4 ? AF_INET : AF_INET6
        let written = copy.withUnsafeMutableBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        guard written != nil else { return bytes.map { String($0) }.joined(separator: ".") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
