package com.shop.payment.event;

public record PaymentSucceededEvent(String orderId) {}
