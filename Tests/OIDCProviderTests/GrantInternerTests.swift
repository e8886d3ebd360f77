import Foundation
import Testing

@testable import OIDCProvider

@Suite("Grants in memory share their text")
struct GrantInternerTests {
    /// A copy of `text` in storage of its own, as a fresh WhoIs answer or request would decode it.
    static func fresh(_ text: String) -> String {
        String(decoding: Array(text.utf8), as: UTF8.self)
    }

    static func grant(nodeName: String = "alice-laptop.example-tailnet.ts.net.") -> AuthorizationGrant {
        let identity = UserIdentity(
            userID: 2001, loginName: fresh("alice.longer-name@example.com"), displayName: fresh("Alice Example Person"),
            nodeID: 1001, nodeName: fresh(nodeName), addresses: [fresh("100.64.0.1/32")])
        return AuthorizationGrant(
            clientID: fresh("client-0123456789abcdef"), redirectURI: fresh("https://app.example.com/callback"),
            scopes: ["openid", "email"], resources: [], identity: identity, authTime: Date(timeIntervalSince1970: 1))
    }

    /// Where a (large, heap-stored) string's bytes are.
    static func storage(_ text: String) -> UnsafeRawPointer? {
        var text = text
        return text.withUTF8 { UnsafeRawPointer($0.baseAddress) }
    }

    @Test("two logins of the same person and device on one client hold one copy of its text")
    func sameIdentityShared() {
        var tables = GrantTables()
        let now = Date(timeIntervalSince1970: 100)
        let first = Self.grant()
        let second = Self.grant()
        #expect(Self.storage(first.identity.loginName) != Self.storage(second.identity.loginName))
        let issued1 = tables.issueCode("a", grant: first, expiresAt: now + 300, now: now)
        #expect(issued1)
        let issued2 = tables.issueCode("b", grant: second, expiresAt: now + 300, now: now)
        #expect(issued2)
        let a = tables.codes["a"]!.grant
        let b = tables.codes["b"]!.grant
        #expect(a == first && b == second)
        #expect(Self.storage(a.identity.loginName) == Self.storage(b.identity.loginName))
        #expect(Self.storage(a.identity.nodeName) == Self.storage(b.identity.nodeName))
        #expect(Self.storage(a.clientID) == Self.storage(b.clientID))
        #expect(Self.storage(a.redirectURI) == Self.storage(b.redirectURI))

        // Families and access tokens share it too.
        tables.setFamily("f", RefreshFamily(grant: Self.grant(), currentTokenHash: "h", expiresAt: now + 600))
        #expect(Self.storage(tables.families["f"]!.grant.identity.displayName) == Self.storage(a.identity.displayName))
    }

    @Test("a changed identity (a renamed device) is kept as it is, never replaced by an older one")
    func changedIdentityKept() {
        var tables = GrantTables()
        let now = Date(timeIntervalSince1970: 100)
        let issued3 = tables.issueCode("a", grant: Self.grant(), expiresAt: now + 300, now: now)
        #expect(issued3)
        let renamed = Self.grant(nodeName: "alice-new-laptop.example-tailnet.ts.net.")
        let issued4 = tables.issueCode("b", grant: renamed, expiresAt: now + 300, now: now)
        #expect(issued4)
        #expect(tables.codes["b"]!.grant == renamed)
        #expect(tables.codes["a"]!.grant.identity.nodeName == "alice-laptop.example-tailnet.ts.net.")
    }
}
