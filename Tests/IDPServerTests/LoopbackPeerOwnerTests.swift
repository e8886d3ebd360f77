import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import IDPServer

@Suite("Loopback peer owner")
struct LoopbackPeerOwnerTests {
    @Test("addresses are spelled as the kernel's table spells them")
    func spelling() {
        #if _endian(little)
            #expect(LoopbackPeerOwner.key(ip: "127.0.0.1", port: 8080) == "0100007F:1F90")
            #expect(LoopbackPeerOwner.key(ip: "10.1.2.3", port: 443) == "0302010A:01BB")
        #endif
        #expect(LoopbackPeerOwner.key(ip: "::1", port: 80) == nil)
        #expect(LoopbackPeerOwner.key(ip: "127.0.0.1", port: 70000) == nil)
    }

    @Test("the row whose local end is the peer and remote end is the listener gives the owner")
    func table() {
        let table = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
               1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1
               2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1
            """
        #expect(LoopbackPeerOwner.find(in: table, from: "0100007F:D431", to: "0100007F:1F90") == 1000)
        #expect(LoopbackPeerOwner.find(in: table, from: "0100007F:D432", to: "0100007F:1F90") == nil)
    }

    @Test("a live loopback connection is owned by this process's user, behind many listening sockets")
    func live() async throws {
        #if os(Linux)
            let group = MultiThreadedEventLoopGroup.singleton
            // The kernel lists listening sockets first and hands the table out a page at a time:
            // with this many ahead of it, the connection's row is only found by reading to the end.
            var listeners: [any Channel] = []
            for _ in 0..<80 {
                listeners.append(try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get())
            }
            defer { for listener in listeners { _ = listener.close() } }
            let server = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: "127.0.0.1", port: 0).get()
            defer { _ = server.close() }
            let client = try await ClientBootstrap(group: group).connect(to: server.localAddress!).get()
            defer { _ = client.close() }
            let owner = LoopbackPeerOwner.uid(peer: client.localAddress, local: client.remoteAddress)
            #expect(owner == getuid())
        #endif
    }
}

@Suite("Trusting tailscaled's proxy by its user")
struct LoopbackOwnerTrustTests {
    @Test("a loopback connection of the named user is trusted; of another user, or not loopback, it is not")
    func trust() async throws {
        #if os(Linux)
            let group = MultiThreadedEventLoopGroup.singleton
            let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            defer { _ = server.close() }
            let client = try await ClientBootstrap(group: group).connect(to: server.localAddress!).get()
            defer { _ = client.close() }
            // Seen from the listener: the peer is the client's end, the local end is the server's.
            let peer = client.localAddress
            let local = client.remoteAddress
            #expect(ForwardedTrust.loopbackOwner(uid: getuid()).trusts(peer, local: local))
            #expect(!ForwardedTrust.loopbackOwner(uid: getuid() &+ 1).trusts(peer, local: local))
            #expect(!ForwardedTrust.loopbackOwner(uid: getuid()).trusts(peer, local: nil), "no local end: no answer")
            let outside = try SocketAddress(ipAddress: "100.64.0.1", port: 40000)
            #expect(!ForwardedTrust.loopbackOwner(uid: getuid()).trusts(outside, local: local))
            #expect(!ForwardedTrust.loopbackOwner(uid: getuid()).trustsUnixSocketPeers)
        #endif
    }
}

@Suite("Loopback owners remembered per connection")
struct LoopbackConnectionOwnersTests {
    @Test("the owner is looked up when the connection opens and forgotten when it closes")
    func lifetime() async throws {
        #if os(Linux)
            let group = MultiThreadedEventLoopGroup.singleton
            let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            defer { _ = server.close() }
            let client = try await ClientBootstrap(group: group).connect(to: server.localAddress!).get()
            let peer = try #require(client.remoteAddress)
            let local = try #require(client.localAddress)
            let trust = ForwardedTrust.loopbackOwner(uid: getuid())
            #expect(LoopbackConnectionOwners.shared.owner(peer: peer, local: local) == nil)
            trust.connectionOpened(client)
            #expect(LoopbackConnectionOwners.shared.owner(peer: peer, local: local) == getuid())
            // Other rules never ask the kernel.
            ForwardedTrust.nobody.connectionOpened(client)
            try await client.close()
            // Callbacks run in the order they were added: the store's runs before this one.
            try await client.closeFuture.get()
            #expect(LoopbackConnectionOwners.shared.owner(peer: peer, local: local) == nil)
        #endif
    }
}
