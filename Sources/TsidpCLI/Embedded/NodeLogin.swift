import Foundation
import Logging
import Tailnet

/// What the embedded node logs in with.
///
/// - Important: Its description hides the key: service and configuration values reach debug logs.
struct NodeSettings: Sendable, Equatable, CustomStringConvertible {
    /// `--hostname` (`TS_HOSTNAME`).
    var hostname: String
    /// `TS_AUTHKEY`, `TS_AUTH_KEY` or the content of `TS_AUTHKEY_FILE`; nil for an interactive login.
    var authKey: String?
    /// `TS_ADVERTISE_TAGS`; nil leaves the node's tags alone.
    var advertiseTags: [String]?
    /// `TSNET_FORCE_LOGIN=1`: log in again even when the state holds a login.
    var forceLogin: Bool

    var description: String {
        "NodeSettings(hostname: \(hostname), authKey: \(authKey == nil ? "none" : "[redacted]"), "
            + "advertiseTags: \(advertiseTags?.joined(separator: ",") ?? "unchanged"), forceLogin: \(forceLogin))"
    }
}

/// A login that cannot succeed without the operator: the key was refused, for instance.
struct NodeLoginFailure: Error, CustomStringConvertible, Equatable {
    var message: String
    var description: String { message }
}

/// Brings tsidp's own tailscaled to Running through the LocalAPI, as `tailscale up` does: watch
/// the IPN bus first, send `/start` with complete prefs and the auth key, and follow the bus until
/// the node runs (wire document §5.2).
struct NodeLogin {
    let localAPI: LocalAPIClient
    let settings: NodeSettings
    let logger: Logger
    /// Where a person is told to open a login URL or to approve the node.
    let tell: @Sendable (String) -> Void

    /// Returns once the node is Running, with its status.
    ///
    /// - Throws: ``NodeLoginFailure`` when tailscaled reports an error (a refused key), or a
    ///   LocalAPI error when tailscaled goes away meanwhile.
    func bringUp() async throws -> Status {
        // The bus is opened before `/start`, so that nothing it says is missed; mask 2 asks for
        // the current state first.
        let bus = try await localAPI.watchIPNBus(mask: 2)
        var notifications = bus.makeAsyncIterator()
        guard let first = try await notifications.next() else {
            throw LocalAPIError.transport("tailscaled closed the IPN bus")
        }
        var state = first.state ?? .noState
        let prefs = try await localAPI.prefs()
        let wanted = prefs.forStart(hostname: settings.hostname, tags: settings.advertiseTags)

        if settings.forceLogin, state != .needsLogin, state != .noState {
            logger.info("TSNET_FORCE_LOGIN is set: logging the node out to log in again")
            try await localAPI.logout()
            state = .needsLogin
        }
        if state == .running, Self.sameNode(prefs, wanted) {
            logger.info("tailscaled is already logged in and running")
            return try await localAPI.status()
        }
        if settings.authKey != nil, state == .running || state == .starting {
            logger.info("the node state holds a login; the auth key is not needed and not sent")
        }
        let sendKey = state == .needsLogin || state == .noState
        try await localAPI.start(StartOptions(updatePrefs: wanted, authKey: sendKey ? settings.authKey ?? "" : ""))
        if sendKey, settings.authKey == nil {
            try await localAPI.loginInteractive()
        }
        if state == .running || state == .starting {
            // A node that was already up (a new name or tags) may come back without saying so on
            // the bus: ask once.
            let status = try await localAPI.status()
            if status.backendState == "Running" {
                logger.info("tailscaled is already logged in and running")
                return status
            }
        }

        var toldURL: String?
        var toldApproval = false
        while let notification = try await notifications.next() {
            if let message = notification.errorMessage, !message.isEmpty {
                throw NodeLoginFailure(message: "tailscaled could not log in: \(message)")
            }
            if let url = notification.browseToURL, url != toldURL {
                toldURL = url
                tell(
                    "To add this node to your tailnet, open \(url) (or restart tsidp with TS_AUTHKEY set)")
            }
            if notification.loginFinished { logger.info("tailnet login finished") }
            guard let next = notification.state else { continue }
            if next != state { logger.info("tailscaled state", metadata: ["state": "\(next)"]) }
            state = next
            switch next {
            case .running:
                return try await localAPI.status()
            case .needsMachineAuth where !toldApproval:
                toldApproval = true
                tell("The node waits for approval: approve it on the Machines page of the Tailscale admin console")
            default:
                continue
            }
        }
        throw LocalAPIError.transport("tailscaled closed the IPN bus before the node was running")
    }

    /// Whether the running node already has the name and tags tsidp wants.
    static func sameNode(_ current: Prefs, _ wanted: Prefs) -> Bool {
        return current.fields["Hostname"] == wanted.fields["Hostname"]
            && normalizedTags(current) == normalizedTags(wanted)
            && current.fields["WantRunning"] == .bool(true)
    }

    static func normalizedTags(_ prefs: Prefs) -> [String] {
        guard case .array(let items)? = prefs.fields["AdvertiseTags"] else { return [] }
        return items.compactMap { if case .string(let text) = $0 { text } else { nil } }.sorted()
    }
}
