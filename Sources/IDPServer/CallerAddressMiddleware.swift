import Hummingbird

/// Sets each request's ``IDPRequestContext/callerAddress`` by the rule of ``CallerAddress``:
/// from `X-Forwarded-For` on a connection that `trust` trusts, from the connection otherwise.
///
/// - Important: It must run before any route that identifies the caller; ``IDPServer`` adds it
///   first. Without it a request's caller is its connection's peer, and `X-Forwarded-For` is
///   never read.
struct CallerAddressMiddleware: RouterMiddleware {
    typealias Context = IDPRequestContext
    let trust: ForwardedTrust

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var context = context
        context.callerAddress = CallerAddress.resolve(
            peer: context.remoteAddress, local: context.localAddress, headers: request.headers, trust: trust)
        return try await next(request, context)
    }
}
