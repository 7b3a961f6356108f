package com.shop.payment.event;

public record PaymentFailedEvent(String orderId, String reason) {}
