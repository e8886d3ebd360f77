import Foundation
import Logging
import ServiceLifecycle
import Tailnet

/// `--funnel`: asks tailscaled to terminate HTTPS for the node's name on `--port`, to let Funnel
/// traffic in, and to proxy every request to tsidp's serve-proxy listener. The entry lives in a
/// foreground serve config tied to this service's IPN bus session (wire document §4.3): written
/// with the ETag it was read with, removed again on shutdown, and removed by tailscaled itself if
/// tsidp dies first. When tailscaled restarts (the session ends), it is written again.
///
/// Placed last in its service group, so that it stops first: Funnel traffic stops arriving
/// before the listeners drain.
struct ServePublisher: Service {
    let localAPI: LocalAPIClient
    /// The node's MagicDNS name, without the trailing dot.
    let dnsName: String
    /// The port tailnet and Funnel callers use (`--port`).
    let port: Int
    /// Returns the proxy target (`http://127.0.0.1:<port>`) once the serve-proxy listener runs.
    let target: @Sendable () async -> String?
    /// Returns once tsidp's node runs (at once for the host's tailscaled).
    let nodeRunning: @Sendable () async -> Void
    let logger: Logger
    /// Runs once, when the entry is first in place.
    var onPublished: @Sendable () async -> Void = {}
    /// How often a lost session is re-established.
    var retryDelay: Duration = .seconds(2)

    var hostPort: String { "\(dnsName):\(port)" }

    func run() async throws {
        guard let target = await target() else { return }
        var published = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await nodeRunning()
            do {
                try await holdSession(target: target, firstTime: !published)
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                logger.warning(
                    "tailscaled ended the Funnel session; publishing again", metadata: ["host": "\(hostPort)"])
            } catch let refusal as UsageError {
                // Only the operator can fix this: tsidp stops with the message (status 2).
                throw refusal
            } catch {
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                if !published {
                    throw UsageError("cannot turn on Funnel through tailscaled's serve config: \(error)")
                }
                logger.warning(
                    "Funnel session lost; publishing again in \(retryDelay)", metadata: ["error": "\(error)"])
            }
            published = true
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: retryDelay) }
            } catch {
                return
            }
        }
    }

    /// Opens a bus session, publishes the config under it, and holds the session until tailscaled
    /// ends it or shutdown begins (then the entry is removed first).
    func holdSession(target: String, firstTime: Bool) async throws {
        let status = try await localAPI.status()
        if let refusal = status.selfNode.map({ $0.funnelRefusal(port: port) }) ?? "tailscaled reports no node" {
            throw UsageError("--funnel: \(refusal)")
        }
        let bus = try await localAPI.watchIPNBus(mask: 2)
        var notifications = bus.makeAsyncIterator()
        guard let first = try await notifications.next(), !first.sessionID.isEmpty else {
            throw LocalAPIError.malformedResponse("the IPN bus gave no session ID")
        }
        let session = first.sessionID
        try await publish(session: session, target: target)
        logger.info(
            "Funnel is on: tailscaled terminates HTTPS and proxies to tsidp",
            metadata: ["url": "https://\(hostPort)", "proxy": "\(target)"])
        if firstTime { await onPublished() }

        let reading = Task {
            var rest = notifications
            while try await rest.next() != nil {}
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                _ = await reading.result
            } onGracefulShutdown: {
                Task {
                    await withdraw(session: session)
                    reading.cancel()
                }
            }
        } onCancel: {
            reading.cancel()
        }
    }

    /// Adds this session's foreground config, unless someone else already serves the port.
    func publish(session: String, target: String) async throws {
        for _ in 0..<8 {
            let (config, etag) = try await localAPI.serveConfig()
            if config.claims(port: port, hostPort: hostPort, exceptSession: session) {
                throw UsageError(
                    "--funnel: tailscaled already serves port \(port) (its serve config): remove that with `tailscale serve reset`, or choose another --port"
                )
            }
            var updated = config
            updated.setForeground(session, .proxy(port: port, hostPort: hostPort, target: target, funnel: true))
            do {
                try await localAPI.setServeConfig(updated, ifMatch: etag)
                return
            } catch LocalAPIError.preconditionFailed {
                continue  // someone changed it between read and write: read again
            } catch LocalAPIError.accessDenied(let message) {
                throw UsageError(
                    "--funnel: tailscaled refused to change its serve config (\(message)); run tsidp as root or as the operator user (`tailscale set --operator=$USER`)"
                )
            }
        }
        throw LocalAPIError.preconditionFailed("the serve config kept changing while tsidp wrote it")
    }

    /// Removes this session's foreground config; a failure is logged (tailscaled drops the entry
    /// anyway when the session's bus stream closes).
    func withdraw(session: String) async {
        for _ in 0..<8 {
            do {
                let (config, etag) = try await localAPI.serveConfig()
                guard config.foreground(session) != nil else { return }
                var updated = config
                updated.setForeground(session, nil)
                try await localAPI.setServeConfig(updated, ifMatch: etag)
                logger.info("Funnel is off", metadata: ["url": "https://\(hostPort)"])
                return
            } catch LocalAPIError.preconditionFailed {
                continue
            } catch {
                logger.warning(
                    "could not remove the Funnel entry from tailscaled's serve config; it goes when the session closes",
                    metadata: ["error": "\(error)"])
                return
            }
        }
    }
}
