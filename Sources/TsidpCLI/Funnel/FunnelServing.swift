import Foundation
import IDPServer
import Logging
import ServiceLifecycle
import Tailnet

/// A value that one task hands to others once: the port the serve-proxy listener got.
actor Handover<Value: Sendable> {
    private var value: Value?
    private var waiters: [CheckedContinuation<Value, Never>] = []

    func put(_ newValue: Value) {
        guard value == nil else { return }
        value = newValue
        for waiter in waiters { waiter.resume(returning: newValue) }
        waiters = []
    }

    func take() async -> Value {
        if let value { return value }
        return await withCheckedContinuation { waiters.append($0) }
    }
}

extension Configuration {
    /// `--funnel`: the serve-proxy listener (plain HTTP on a free loopback port, whose forwarded
    /// headers count only on connections from tailscaled's user) and the publisher that points
    /// tailscaled's serve config at it.
    ///
    /// - Parameters:
    ///   - tailscaledUID: the user tailscaled runs as.
    ///   - nodeRunning: returns once the node runs (the embedded node may be restarting).
    ///   - onRunning: runs twice: when the listener accepts connections, and when tailscaled's
    ///     serve config first points at it.
    func funnelServices(
        server: IDPServer, localAPI: LocalAPIClient, dnsName: String, tailscaledUID: UInt32,
        nodeRunning: @escaping @Sendable () async -> Void, logger: Logger,
        onRunning: @escaping @Sendable () async -> Void
    ) -> [any Service] {
        let port = Handover<Int>()
        let trust = ForwardedTrust.loopbackOwner(uid: tailscaledUID)
        let proxyListener = listener(
            server.router(for: .tailnet, forwardedTrust: trust), host: "127.0.0.1", port: 0, portFlag: "--funnel",
            logger: logger, forwardedTrust: trust,
            onBound: { bound in await port.put(bound) }, onRunning: onRunning)
        var publisher = ServePublisher(
            localAPI: localAPI, dnsName: dnsName, port: self.port,
            target: { "http://127.0.0.1:\(await port.take())" }, nodeRunning: nodeRunning, logger: logger)
        publisher.onPublished = onRunning
        // The publisher last: it stops first, so Funnel traffic stops before the listener drains.
        return [proxyListener, publisher]
    }
}
