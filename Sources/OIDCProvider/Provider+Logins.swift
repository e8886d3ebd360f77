import Crypto
import Foundation

/// One live login of a user (a refresh family), as the user's own page lists it.
public struct LoginSummary: Sendable, Equatable {
    /// Names this login on the user's page; see ``Provider/loginHandle(familyID:)``.
    public var handle: String
    public var clientID: String
    /// The client's name, or its ID when it has none or no longer exists.
    public var clientName: String
    /// The device the user signed in from.
    public var nodeName: String
    public var nodeID: Int64
    /// When the user signed in (the authorization that started the login).
    public var signedInAt: Date
    /// When the application last obtained tokens for this login (sign-in or refresh).
    public var lastUsedAt: Date
    /// When the login ends unless the application refreshes it.
    public var expiresAt: Date
    public var scopes: [String]
}

extension Provider {
    /// The opaque name of a login on its user's page: a digest of the family's internal ID.
    ///
    /// - Important: Never the refresh token or its digest, which are what the state files index
    ///   tokens by; and a handle only ever acts on a login of the user who presents it (see
    ///   ``endLogin(userID:handle:)``).
    public static func loginHandle(familyID: String) -> String {
        let digest = SHA256.hash(data: Data("tsidp login handle|\(familyID)".utf8))
        return Base64URL.encode(Data(digest).prefix(18))
    }

    /// The live logins of `userID`, most recently used first.
    public func logins(userID: Int64) async -> [LoginSummary] {
        let current = now()
        let lifetime = configuration.refreshTokenLifetime
        let families = ledger.read { tables in
            tables.families.filter { $0.value.grant.identity.userID == userID && $0.value.expiresAt > current }
        }
        var names: [String: String] = [:]
        var summaries: [LoginSummary] = []
        for (id, family) in families {
            let grant = family.grant
            if names[grant.clientID] == nil {
                let name = await clients.client(grant.clientID)?.name ?? ""
                names[grant.clientID] = name.isEmpty ? grant.clientID : name
            }
            // A family's expiry is set one lifetime after its last rotation.
            let lastUsed = max(grant.authTime, family.expiresAt.addingTimeInterval(-lifetime))
            summaries.append(
                LoginSummary(
                    handle: Self.loginHandle(familyID: id), clientID: grant.clientID,
                    clientName: names[grant.clientID] ?? grant.clientID, nodeName: grant.identity.nodeName,
                    nodeID: grant.identity.nodeID, signedInAt: grant.authTime, lastUsedAt: lastUsed,
                    expiresAt: family.expiresAt, scopes: grant.scopes))
        }
        return summaries.sorted { ($0.lastUsedAt, $0.handle) > ($1.lastUsedAt, $1.handle) }
    }

    /// How many live logins (unexpired refresh families) `clientID` holds.
    public func liveLoginCount(clientID: String) -> Int {
        let current = now()
        return ledger.read { tables in
            tables.families.values.lazy.filter { $0.grant.clientID == clientID && $0.expiresAt > current }.count
        }
    }

    /// Ends the login of `userID` named `handle`: its refresh token and every access token it
    /// issued stop working. Returns whether such a login existed.
    ///
    /// - Important: Scoped to `userID`: a handle of another user's login ends nothing.
    @discardableResult
    public func endLogin(userID: Int64, handle: String) async throws -> Bool {
        let ended = try await ledger.transact { tables -> String? in
            for (id, family) in tables.families
            where family.grant.identity.userID == userID
                && ConstantTime.equals(Self.loginHandle(familyID: id), handle)
            {
                tables.revokeFamily(id)
                return family.grant.clientID
            }
            return nil
        }
        if let clientID = ended {
            logger.info("login ended by its user", metadata: ["client_id": "\(clientID)"])
        }
        return ended != nil
    }
}
