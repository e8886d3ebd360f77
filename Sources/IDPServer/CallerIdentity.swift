import AnyJSON
import Logging
import OIDCProvider
import Tailnet
import Telemetry

/// Turns WhoIs answers into the provider's ``UserIdentity``.
public struct CallerIdentity: Sendable {
    public let localAPI: LocalAPIClient
    /// The application capability under which tsidp's grants are read.
    public let capabilityName: String

    /// Nodes that are never a caller: tsidp's own node (a local process connecting to the node's
    /// own address would otherwise act as the node's owner).
    public let excludedNodeStableIDs: Set<String>
    /// Where each WhoIs call's duration and outcome is recorded.
    public var metrics: TsidpMetrics?
    /// Concurrent WhoIs questions about one address share one LocalAPI request; refreshes may
    /// reuse an answer up to ``WhoIsSharing/reuse`` old.
    public let sharing: WhoIsSharing

    public init(
        localAPI: LocalAPIClient, capabilityName: String, excludedNodeStableIDs: Set<String> = [],
        metrics: TsidpMetrics? = nil, sharing: WhoIsSharing = WhoIsSharing()
    ) {
        self.localAPI = localAPI
        self.capabilityName = capabilityName
        self.excludedNodeStableIDs = excludedNodeStableIDs
        self.metrics = metrics
        self.sharing = sharing
    }

    /// WhoIs for a request's caller (see ``CallerAddress``); a caller without an address is
    /// an unknown device.
    public func identify(_ caller: CallerAddress) async throws(IdentityFailure) -> UserIdentity {
        guard let address = caller.whoIsAddress else {
            if case .unknown(let reason) = caller { throw .unknownDevice(reason) }
            throw .unknownDevice("the request names no caller")
        }
        return try await identify(address: address)
    }

    /// WhoIs for `address`.
    ///
    /// - Parameter allowReuse: an answer up to ``WhoIsSharing/reuse`` old will do (refreshes);
    ///   otherwise only a request under way is shared.
    /// - Important: Fails closed: every LocalAPI error becomes an ``IdentityFailure``; there is no
    ///   fallback identity.
    public func identify(address: String?, allowReuse: Bool = false) async throws(IdentityFailure) -> UserIdentity {
        guard let address else { throw .unknownDevice("the connection has no peer address") }
        let whois: WhoIsResponse
        let localAPI = self.localAPI
        let metrics = self.metrics
        do {
            whois = try await sharing.answer(for: address, allowReuse: allowReuse) {
                // Timed and counted here, once per LocalAPI request, not once per sharer.
                let started = ContinuousClock.now
                do {
                    let answer = try await localAPI.whoIs(address: address)
                    metrics?.whoIs(.found, duration: ContinuousClock.now - started)
                    return answer
                } catch LocalAPIError.peerNotFound {
                    metrics?.whoIs(.notFound, duration: ContinuousClock.now - started)
                    throw LocalAPIError.peerNotFound
                } catch {
                    metrics?.whoIs(.failed, duration: ContinuousClock.now - started)
                    throw error
                }
            }
        } catch LocalAPIError.peerNotFound {
            throw .unknownDevice("no tailnet peer at \(address)")
        } catch {
            throw .unavailable("\(error)")
        }
        guard !excludedNodeStableIDs.contains(whois.node.stableID) else {
            throw .unknownDevice("connections from tsidp's own node have no user")
        }
        // An answer without IDs is not an identity (THREATS: unexpected answers fail closed).
        guard whois.node.id != 0, whois.userProfile.id != 0,
            whois.node.isTagged || !whois.userProfile.loginName.isEmpty
        else {
            throw .unknownDevice("the tailnet's answer names no user")
        }
        return convert(whois)
    }

    /// Who owns the grant's device now: WhoIs on the node's first Tailscale address, as every
    /// refresh asks. An answer up to ``WhoIsSharing/reuse`` old (two seconds) will do, so a burst
    /// of refreshes from one device costs one LocalAPI request.
    public func reidentify(_ identity: UserIdentity) async throws(IdentityFailure) -> UserIdentity {
        guard let prefix = identity.addresses.first,
            let address = prefix.split(separator: "/", maxSplits: 1).first.map(String.init), !address.isEmpty
        else {
            throw .unknownDevice("the grant's device has no Tailscale address")
        }
        return try await identify(address: address, allowReuse: true)
    }

    /// The provider's view of a WhoIs answer.
    ///
    /// - Important: A profile picture URL that is not `https` is dropped here, so it reaches
    ///   neither tokens nor the grant files.
    public func convert(_ whois: WhoIsResponse) -> UserIdentity {
        var identity = UserIdentity(
            userID: whois.userProfile.id, loginName: whois.userProfile.loginName,
            displayName: whois.userProfile.displayName, profilePicURL: whois.userProfile.profilePicURL,
            groups: whois.userProfile.groups, nodeID: whois.node.id, nodeStableID: whois.node.stableID,
            nodeName: whois.node.name, nodeKey: whois.node.key, addresses: whois.node.addresses, tags: whois.node.tags,
            capabilityValues: whois.capMap[capabilityName] ?? [])
        identity.profilePicURL = identity.pictureURL ?? ""
        return identity
    }
}
