import HTTPTypes
import IDPServer
import NIOCore
import Testing

@Suite("Caller address: X-Forwarded-For from trusted proxies only")
struct CallerAddressTests {
    static let proxy = try! SocketAddress(ipAddress: "127.0.0.1", port: 40001)
    static let stranger = try! SocketAddress(ipAddress: "127.0.0.5", port: 40002)
    static let loopbackProxy = ForwardedTrust(
        networks: [try! IPNetwork(parsing: "127.0.0.1/32")], unixSocketPeers: false)

    static func headers(_ values: [String]) -> HTTPFields {
        var fields = HTTPFields()
        for value in values { fields.append(HTTPField(name: CallerAddress.forwardedForField, value: value)) }
        return fields
    }

    static func forwarded(_ text: String) -> CallerAddress { .forwarded(IPAddress(parsing: text)!) }

    @Test(
        "the last element of the last header, trimmed",
        arguments: [
            (["127.0.0.2"], "127.0.0.2"),
            (["127.0.0.9, 127.0.0.2"], "127.0.0.2"),
            (["127.0.0.9,127.0.0.2"], "127.0.0.2"),
            ([" 10.0.0.1 ,\t 127.0.0.3 \t"], "127.0.0.3"),
            (["127.0.0.9", "127.0.0.4"], "127.0.0.4"),
            (["127.0.0.9, 127.0.0.8", "10.1.1.1, 127.0.0.4"], "127.0.0.4"),
            (["fd7a:115c:a1e0::1"], "fd7a:115c:a1e0::1"),
            (["[fd7a:115c:a1e0::1]"], "fd7a:115c:a1e0::1"),
            (["127.0.0.9, [FD7A:115C:A1E0:0:0:0:0:2]"], "fd7a:115c:a1e0::2"),
            (["::ffff:127.0.0.2"], "127.0.0.2"),
        ])
    func lastElement(values: [String], expected: String) {
        let caller = CallerAddress.forwarded(values)
        #expect(caller == Self.forwarded(expected))
        #expect(caller.whoIsAddress == expected)
    }

    @Test(
        "anything but one IP address as the last element names no caller",
        arguments: [
            [], [""], ["   "], ["127.0.0.2,"], ["127.0.0.2, "], ["127.0.0.2", ""], ["127.0.0.2", "unknown"],
            ["localhost"], ["alice@example.com"], ["127.0.0.2:8080"], ["[fd7a::1]:443"], ["fd7a::1%eth0"],
            ["[fd7a::1"], ["fd7a::1]"], ["[127.0.0.2]"], ["127.0.0.02"], ["127.0.0"], ["127.0.0.2.5"],
            ["256.0.0.1"], ["0x7f.0.0.1"], ["127.0.0.2\u{0}garbage"], ["\u{FF11}27.0.0.2"], ["_hidden"],
            ["for=127.0.0.2"], ["127.0.0.2 127.0.0.3"], ["1:2:3:4:5:6:7:8:9"],
        ])
    func garbage(values: [String]) {
        let caller = CallerAddress.forwarded(values)
        guard case .unknown = caller else {
            Issue.record("\(values) gave \(caller)")
            return
        }
        #expect(caller.whoIsAddress == nil)
    }

    @Test("a trusted proxy's header names the caller; without one there is no caller, not the proxy")
    func trustedPeer() {
        let trust = Self.loopbackProxy
        #expect(
            CallerAddress.resolve(peer: Self.proxy, headers: Self.headers(["127.0.0.1, 127.0.0.2"]), trust: trust)
                == Self.forwarded("127.0.0.2"))
        let missing = CallerAddress.resolve(peer: Self.proxy, headers: [:], trust: trust)
        #expect(missing.whoIsAddress == nil)
        let bad = CallerAddress.resolve(peer: Self.proxy, headers: Self.headers(["127.0.0.2, nonsense"]), trust: trust)
        #expect(bad.whoIsAddress == nil)
    }

    @Test("from a peer outside the trusted ranges the header is ignored: the caller is the peer")
    func untrustedPeer() {
        for trust in [Self.loopbackProxy, .nobody] {
            for values in [["127.0.0.2"], ["garbage"], []] {
                #expect(
                    CallerAddress.resolve(peer: Self.stranger, headers: Self.headers(values), trust: trust)
                        == .peer("127.0.0.5:40002"))
            }
        }
        let v6 = try! SocketAddress(ipAddress: "fd7a:115c:a1e0::7", port: 443)
        #expect(
            CallerAddress.resolve(peer: v6, headers: Self.headers(["127.0.0.2"]), trust: Self.loopbackProxy)
                == .peer("[fd7a:115c:a1e0::7]:443"))
    }

    @Test("unix-socket peers: trusted with `unix`, otherwise no caller at all")
    func unixPeers() throws {
        let peer = try SocketAddress(unixDomainSocketPath: "/run/tsidp/tsidp.sock")
        let withUnix = ForwardedTrust(networks: [], unixSocketPeers: true)
        #expect(
            CallerAddress.resolve(peer: peer, headers: Self.headers(["127.0.0.2"]), trust: withUnix)
                == Self.forwarded("127.0.0.2"))
        // The unix trust does not extend to TCP peers.
        #expect(
            CallerAddress.resolve(peer: Self.proxy, headers: Self.headers(["127.0.0.2"]), trust: withUnix)
                == .peer("127.0.0.1:40001"))
        for trust in [Self.loopbackProxy, .nobody] {
            let caller = CallerAddress.resolve(peer: peer, headers: Self.headers(["127.0.0.2"]), trust: trust)
            #expect(caller.whoIsAddress == nil, "\(trust)")
        }
    }

    @Test("a listener marked as a proxy trusts every connection")
    func everyConnection() {
        #expect(
            CallerAddress.resolve(peer: Self.stranger, headers: Self.headers(["127.0.0.2"]), trust: .everyConnection)
                == Self.forwarded("127.0.0.2"))
        #expect(CallerAddress.resolve(peer: nil, headers: [:], trust: .everyConnection).whoIsAddress == nil)
    }

    @Test("IPv6 ranges, and IPv4-mapped peers of a dual-stack socket matching IPv4 ranges")
    func families() throws {
        let trust = ForwardedTrust(
            networks: [try IPNetwork(parsing: "fd7a:115c:a1e0::/48"), try IPNetwork(parsing: "10.0.0.0/8")],
            unixSocketPeers: false)
        let v6 = try SocketAddress(ipAddress: "fd7a:115c:a1e0:ab12::3", port: 1)
        let mapped = try SocketAddress(ipAddress: "::ffff:10.2.3.4", port: 1)
        let outside = try SocketAddress(ipAddress: "fd7a:115c:a1e1::3", port: 1)
        #expect(trust.trusts(v6))
        #expect(trust.trusts(mapped))
        #expect(!trust.trusts(outside))
        #expect(!trust.trusts(Self.proxy))
        #expect(!trust.trusts(nil))
    }

    @Test("CIDR ranges: bare addresses, lengths, bits past the length, families")
    func networks() throws {
        #expect(try IPNetwork(parsing: "127.0.0.1").description == "127.0.0.1/32")
        #expect(try IPNetwork(parsing: "fd7a:115c:a1e0::1").description == "fd7a:115c:a1e0::1/128")
        #expect(try IPNetwork(parsing: "100.64.0.0/10").contains(IPAddress(parsing: "100.127.255.255")!))
        #expect(try !IPNetwork(parsing: "100.64.0.0/10").contains(IPAddress(parsing: "100.128.0.0")!))
        #expect(try !IPNetwork(parsing: "0.0.0.0/0").contains(IPAddress(parsing: "::1")!))
        #expect(try IPNetwork(parsing: "::/0").contains(IPAddress(parsing: "::1")!))
        #expect(throws: IPNetwork.ParseError.hostBitsSet(try IPNetwork(parsing: "10.0.0.0/8"))) {
            try IPNetwork(parsing: "10.1.2.3/8")
        }
        for text in [
            "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8", "fd7a::/129", "10.0.0.0/8/8",
        ] {
            #expect(throws: IPNetwork.ParseError.badPrefixLength, "\(text)") { try IPNetwork(parsing: text) }
        }
        for text in ["", "unix", "example.com/24", "10.0.0.0:80/8"] {
            #expect(throws: IPNetwork.ParseError.malformed, "\(text)") { try IPNetwork(parsing: text) }
        }
    }

    @Test("a trusted proxy or a unix-socket peer is held to the total cap only")
    func proxyConnectionCap() {
        let counter = ConnectionCounter(maxPerPeer: 2, maxTotal: 5)
        for _ in 0..<4 { #expect(counter.admit("127.0.0.1", perPeerCap: false) == .admitted) }
        #expect(counter.admit("127.0.0.3") == .admitted)
        #expect(counter.admit("127.0.0.1", perPeerCap: false) == .refusedTotalLimit(firstRefusal: true))
        counter.release("127.0.0.1")
        #expect(counter.admit("127.0.0.1") == .refusedPeerLimit(firstRefusal: true))
        #expect(counter.total == 4)
    }
}
