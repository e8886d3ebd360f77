import Foundation

/// The authorization-code lifecycle: issued → redeemed (with what it minted) → replayed, or
/// expired. Codes live five minutes and are kept in memory only.
///
/// The book also counts unredeemed codes per user and client, so that a loop on `/authorize`
/// cannot grow memory without bound and one user cannot hold more than a few sign-ins open.
struct CodeBook: Sendable {
    /// One code, under the SHA-256 of its value.
    struct Entry: Sendable, Equatable {
        /// The grant, held by reference: the book keeps up to 100,000 codes for five minutes, and
        /// a grant inline would make every slot of its table (free ones included) hundreds of
        /// bytes.
        private var box: GrantBox
        var expiresAt: Date
        /// Set once redeemed; a second redemption revokes what the first one minted.
        var redeemed = false
        var mintedFamily: String?
        var mintedAccessToken: String?

        init(grant: AuthorizationGrant, expiresAt: Date) {
            self.box = GrantBox(grant)
            self.expiresAt = expiresAt
        }

        var grant: AuthorizationGrant {
            get { box.grant }
            set { box = GrantBox(newValue) }
        }
    }

    /// An immutable grant on the heap; equal when the grants are.
    final class GrantBox: Sendable, Equatable {
        let grant: AuthorizationGrant

        init(_ grant: AuthorizationGrant) { self.grant = grant }

        static func == (lhs: GrantBox, rhs: GrantBox) -> Bool { lhs === rhs || lhs.grant == rhs.grant }
    }

    /// Outstanding (unredeemed, unexpired) codes allowed per user and client, and in all.
    static let perUserAndClient = 32
    static let inAll = 100_000

    private(set) var entries: [String: Entry] = [:]
    /// Unredeemed codes per user and client.
    private var outstanding: [String: Int] = [:]

    private static func owner(_ grant: AuthorizationGrant) -> String { "\(grant.identity.userID)|\(grant.clientID)" }

    subscript(hash: String) -> Entry? { entries[hash] }

    var count: Int { entries.count }

    /// Sets or removes a code, keeping the outstanding counts.
    mutating func set(_ hash: String, _ entry: Entry?) {
        if let old = entries[hash], !old.redeemed { outstanding[Self.owner(old.grant), default: 1] -= 1 }
        if let entry, !entry.redeemed { outstanding[Self.owner(entry.grant), default: 0] += 1 }
        entries[hash] = entry
    }

    /// Stores a new code; false when the book is full or the user already holds too many
    /// outstanding codes for the client.
    mutating func issue(_ hash: String, grant: AuthorizationGrant, expiresAt: Date, now: Date) -> Bool {
        if entries.count >= Self.inAll || outstanding[Self.owner(grant), default: 0] >= Self.perUserAndClient {
            // Expired codes still count until swept; sweep before refusing.
            sweep(now: now)
        }
        guard entries.count < Self.inAll, outstanding[Self.owner(grant), default: 0] < Self.perUserAndClient else {
            return false
        }
        set(hash, Entry(grant: grant, expiresAt: expiresAt))
        return true
    }

    /// Forgets expired codes.
    mutating func sweep(now: Date) {
        entries = entries.filter { $0.value.expiresAt > now }
        recount()
    }

    /// Forgets every code of `clientID`.
    mutating func remove(clientID: String) {
        entries = entries.filter { $0.value.grant.clientID != clientID }
        recount()
    }

    /// Unredeemed codes `grant`'s user holds for its client.
    func outstanding(for grant: AuthorizationGrant) -> Int { outstanding[Self.owner(grant), default: 0] }

    private mutating func recount() {
        outstanding = [:]
        for entry in entries.values where !entry.redeemed { outstanding[Self.owner(entry.grant), default: 0] += 1 }
    }
}
