import HummingbirdCore
import Logging
import NIOCore

extension HTTPServerBuilder {
    /// HTTP/1.1 with every connection bounded by `limits` and counted by `counter` (see
    /// ``BoundedHTTPChannel``). Listeners that share `counter` share its caps.
    ///
    /// - Parameters:
    ///   - transportSecurity: adds the TLS handler to each connection (nil: plain HTTP).
    ///   - forwardedTrust: the trusted proxies, held to the total cap only.
    public static func bounded(
        _ limits: ListenerLimits, counter: ConnectionCounter, logger: Logger,
        transportSecurity: (@Sendable (any Channel) throws -> Void)? = nil, forwardedTrust: ForwardedTrust = .nobody
    ) -> HTTPServerBuilder {
        .init { responder in
            BoundedHTTPChannel(
                responder: responder, limits: limits, counter: counter, logger: logger,
                transportSecurity: transportSecurity, forwardedTrust: forwardedTrust)
        }
    }
}
