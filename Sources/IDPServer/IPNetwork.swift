/// A range of IP addresses in CIDR notation (`10.0.0.0/8`, `fd7a:115c:a1e0::/48`); a bare
/// address is the range of that one address.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// Why a text is not a network.
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// Not an address, or not `address/length`.
        case malformed
        /// A prefix length outside 0–32 (IPv4) or 0–128 (IPv6), or written with other characters.
        case badPrefixLength
        /// Bits set past the prefix length (`10.1.2.3/8`); the payload is the network meant.
        case hostBitsSet(IPNetwork)

        public var description: String {
            switch self {
            case .malformed: "is not an IP address or a CIDR range"
            case .badPrefixLength: "has a prefix length out of range (0-32 for IPv4, 0-128 for IPv6)"
            case .hostBitsSet(let network): "has bits set past its prefix length: use \(network)"
            }
        }
    }

    /// The first address of the range.
    public let address: IPAddress
    /// How many leading bits every address of the range shares with ``address``.
    public let prefixLength: Int

    /// The network of `address` and the `prefixLength` leading bits.
    public init(address: IPAddress, prefixLength: Int) {
        let bits = address.bytes.count * 8
        let length = min(max(prefixLength, 0), bits)
        self.address = IPAddress(bytes: Self.masked(address.bytes, to: length)) ?? address
        self.prefixLength = length
    }

    /// Parses `address/length` or a bare address.
    ///
    /// - Throws: ``ParseError``; a range written with bits past its length is refused rather
    ///   than silently widened or narrowed.
    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parsing: String(parts[0])) else { throw .malformed }
        let bits = address.bytes.count * 8
        var length = bits
        if parts.count == 2 {
            let lengthText = parts[1]
            guard !lengthText.isEmpty, lengthText.count <= 3, lengthText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = Int(lengthText), value <= bits
            else { throw .badPrefixLength }
            length = value
        }
        let network = IPNetwork(address: address, prefixLength: length)
        guard network.address == address else { throw .hostBitsSet(network) }
        self = network
    }

    /// Whether `candidate` is in the range; an IPv4 address is never in an IPv6 range, nor the
    /// other way round (mapped addresses are IPv4, see ``IPAddress``).
    public func contains(_ candidate: IPAddress) -> Bool {
        candidate.bytes.count == address.bytes.count && Self.masked(candidate.bytes, to: prefixLength) == address.bytes
    }

    /// Whether the two ranges share an address (one of them then holds the other).
    public func overlaps(_ other: IPNetwork) -> Bool {
        prefixLength <= other.prefixLength ? contains(other.address) : other.contains(address)
    }

    /// The loopback ranges, `127.0.0.0/8` and `::1/128`.
    public static let loopback: [IPNetwork] = [
        IPNetwork(address: IPAddress(bytes: [127, 0, 0, 0])!, prefixLength: 8),
        IPNetwork(address: IPAddress(bytes: Array(repeating: 0, count: 15) + [1])!, prefixLength: 128),
    ]

    /// `address/length`.
    public var description: String { "\(address)/\(prefixLength)" }

    static func masked(_ bytes: [UInt8], to length: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let kept = min(max(length - index * 8, 0), 8)
            return kept == 8 ? byte : byte & ~(UInt8(0xff) >> kept)
        }
    }
}
